// The .npy header reader (index/npy_file.h) on arbitrary bytes as a whole file.
#include <cstring>
#include <vector>

#include "core/error.h"
#include "fuzz_entry.h"
#include "index/npy_file.h"

KVRAG_FUZZ_TARGET {
  try {
    const kvrag::NpyLayout layout = kvrag::parse_npy_layout(data, size);
    const size_t itemsize = kvrag::npy_itemsize(layout.dtype);
    // The matrix fills the rest of the file exactly: convert every row as NpyMatrix::row does.
    KVRAG_FUZZ_ASSERT(layout.rows >= 0 && layout.cols >= 1);
    KVRAG_FUZZ_ASSERT(layout.data_offset + size_t(layout.rows) * size_t(layout.cols) * itemsize ==
                      size);
    std::vector<float> row(static_cast<size_t>(layout.cols));
    const uint8_t* values = data + layout.data_offset;
    for (int64_t r = 0; r < layout.rows; ++r) {
      const uint8_t* p = values + size_t(r) * size_t(layout.cols) * itemsize;
      if (layout.dtype == kvrag::NpyDtype::kF16) {
        std::vector<uint16_t> half(row.size());
        std::memcpy(half.data(), p, half.size() * 2);  // the input need not be aligned
        kvrag::half_to_float(half.data(), row.data(), row.size());
      } else {
        std::memcpy(row.data(), p, row.size() * 4);
      }
    }
  } catch (const kvrag::Error&) {
  }
  return 0;
}
