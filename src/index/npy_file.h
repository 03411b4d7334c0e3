// NumPy .npy (format 1.0) files holding one C-order 2-D float16 or float32 matrix: written
// atomically, read through a read-only memory map (numpy.load reads what this writes).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace kvrag {

enum class NpyDtype { kF16, kF32 };

// Writes rows × cols values of `dtype` (float16 as raw IEEE half bits) to `path` atomically.
void write_npy(const std::string& path, NpyDtype dtype, const void* data, int64_t rows, int64_t cols);

class NpyMatrix {
 public:
  // Maps and validates `path` (magic, version, header dict, dtype '<f2'/'<f4', C order, 2-D,
  // file size = header + rows × cols × itemsize); throws Error naming the file otherwise.
  static std::unique_ptr<NpyMatrix> open(const std::string& path);
  ~NpyMatrix();

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  NpyDtype dtype() const { return dtype_; }
  const void* data() const { return data_; }
  // Row i converted to float32.
  void row(int64_t i, float* out) const;

 private:
  NpyMatrix() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const void* data_ = nullptr;
  int64_t rows_ = 0, cols_ = 0;
  NpyDtype dtype_ = NpyDtype::kF32;
};

// IEEE half <-> float (no hardware F16C assumed).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);  // round to nearest even

}  // namespace kvrag
