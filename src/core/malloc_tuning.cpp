#include "core/malloc_tuning.h"

#include <cstdlib>  // defines __GLIBC__ where the C library is glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace kvrag {

void tune_malloc() {
#if defined(__GLIBC__)
  // No block gets a mapping of its own (M_MMAP_THRESHOLD could only raise the bar to 32 MiB);
  // setting the trim threshold also ends glibc's adaptive thresholds.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}

}  // namespace kvrag
