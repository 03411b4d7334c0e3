// Transparent huge pages for large, long-lived buffers (a model's weights).
#pragma once

#include <cstddef>

namespace kvrag {

// Asks the kernel to back the 2 MiB-aligned interior of [data, data + bytes) with transparent huge
// pages (madvise MADV_HUGEPAGE), before the buffer is first written. Buffers under 4 MiB are left
// alone. Advice only: where the kernel's THP setting is "never", or the call fails, nothing
// changes and nothing is reported. A no-op off Linux.
//
// Why: decoding reads every weight once per token, a stream of gigabytes through 4 KiB pages, one
// TLB miss and page walk each; with 2 MiB pages that is 512 times fewer. Most distributions set
// THP to "madvise", under which memory is huge-paged only where asked, as here.
void advise_huge_pages(void* data, size_t bytes);

}  // namespace kvrag
