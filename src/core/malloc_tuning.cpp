#include "core/malloc_tuning.h"

#include <cstdlib>  // defines __GLIBC__ where the C library is glibc

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace kvrag {

void tune_malloc() {
#if defined(__GLIBC__)
  // Setting either disables glibc's adaptive thresholds, so both are set. 32 MiB is the most
  // mallopt accepts for M_MMAP_THRESHOLD on 64-bit (a larger value is refused, silently).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}

}  // namespace kvrag
