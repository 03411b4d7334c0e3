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

// Asks the kernel to move the 2 MiB-aligned interior of [data, data + bytes), already written, into
// huge pages now (madvise MADV_COLLAPSE, Linux 6.1 and later; it copies what is not huge yet).
// Advice only, as above: on an older kernel, or where it fails, nothing changes. For a span of
// buffers allocated one after the other (a model's int8 weights): advise_huge_pages can reach only
// the whole huge pages inside each buffer, so every 2 MiB page that a boundary between two of them
// crosses stayed in 4 KiB pages (in a 1.1B int8, ~15% of its weights).
void collapse_huge_pages(void* data, size_t bytes);

}  // namespace kvrag
