#include "core/huge_pages.h"

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace kvrag {
namespace {

constexpr uintptr_t kHuge = uintptr_t{2} << 20;

// madvise(advice) on the 2 MiB-aligned interior of [data, data + bytes), if it holds a whole huge
// page. Advice: failure is fine.
void advise_interior(void* data, size_t bytes, int advice) {
#if defined(__linux__)
  if (data == nullptr) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end <= begin) return;
  madvise(reinterpret_cast<void*>(begin), end - begin, advice);
#else
  (void)data;
  (void)bytes;
  (void)advice;
#endif
}

}  // namespace

void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes >= 2 * kHuge) advise_interior(data, bytes, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

void collapse_huge_pages(void* data, size_t bytes) {
  constexpr int kCollapse = 25;  // MADV_COLLAPSE (Linux 6.1), absent from older headers
  advise_interior(data, bytes, kCollapse);
}

}  // namespace kvrag
