// NumPy .npy (format 1.0) files holding one C-order 2-D float16 or float32 matrix: written
// atomically, opened read-only with full validation (numpy.load reads what this writes).
//
// The writer pads the header with spaces so that the data starts at a multiple of 64 bytes,
// as numpy does; the reader accepts format versions 1.0, 2.0 and 3.0 and any padding.
//
// An open matrix is memory-mapped (data()), but row() and read_rows() read with pread(): the
// bytes come through the page cache into the caller's buffer, so scattered reads of a large
// file (re-ranking) add nothing to the process's resident memory, and a file truncated behind
// our back is an Error rather than SIGBUS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace kvrag {

enum class NpyDtype { kF16, kF32 };

// Bytes per value of `dtype` (2 or 4).
inline size_t npy_itemsize(NpyDtype dtype) { return dtype == NpyDtype::kF16 ? 2 : 4; }

// The header (magic, version, length, dict padded to 64 bytes) write_npy puts before the data.
std::string npy_header(NpyDtype dtype, int64_t rows, int64_t cols);

// Writes rows × cols values of `dtype` (float16 as raw IEEE half bits) to `path` atomically
// (AtomicFile: a crash leaves the old file or the new one). rows may be 0; cols must be ≥ 1.
void write_npy(const std::string& path, NpyDtype dtype, const void* data, int64_t rows,
               int64_t cols);

// Where the matrix of a .npy file lies: what NpyMatrix::open checks, over the whole file's bytes
// held in memory at bytes[0, size) (the mapped file, or a fuzzer's input). Throws Error (without
// the file name; the caller adds it) unless the header is valid and the size matches exactly.
struct NpyLayout {
  NpyDtype dtype = NpyDtype::kF32;
  int64_t rows = 0, cols = 0;
  size_t data_offset = 0;  // of the first value
};
NpyLayout parse_npy_layout(const void* bytes, size_t size);

class NpyMatrix {
 public:
  // Opens, maps and validates `path` (magic, version, header dict, dtype '<f2'/'<f4', C order,
  // 2-D, file size = header + rows × cols × itemsize); throws Error naming the file otherwise.
  static std::unique_ptr<NpyMatrix> open(const std::string& path);
  ~NpyMatrix();
  NpyMatrix(const NpyMatrix&) = delete;
  NpyMatrix& operator=(const NpyMatrix&) = delete;

  const std::string& path() const { return path_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  NpyDtype dtype() const { return dtype_; }
  const void* data() const { return data_; }  // the mapped values (raw half bits for kF16)
  // Row i converted to float32 into out[cols]. i must be in [0, rows) (not checked). Thread-safe,
  // as are read_rows() and prefetch().
  void row(int64_t i, float* out) const;
  // Rows [begin, begin + n) converted to float32 into out[n × cols]; Error if out of range or
  // if the file cannot be read.
  void read_rows(int64_t begin, int64_t n, float* out) const;
  // Asks the kernel to read rows [begin, begin + n) ahead (asynchronously); no-op if out of range.
  void prefetch(int64_t begin, int64_t n) const;
  // The file's size, and its raw bytes [offset, offset + n) (header included) read with pread
  // into out (checksums, index/block_checksum.h); Error naming the file if they cannot be read.
  uint64_t file_bytes() const { return map_size_; }
  void read_bytes(uint64_t offset, size_t n, void* out) const;

 private:
  NpyMatrix() = default;
  // Reads `bytes` at data offset `offset` into `out`; Error naming the file if it cannot.
  void pread_data(size_t offset, size_t bytes, void* out) const;

  std::string path_;
  int fd_ = -1;
  size_t data_offset_ = 0;  // of the values in the file
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const void* data_ = nullptr;
  int64_t rows_ = 0, cols_ = 0;
  NpyDtype dtype_ = NpyDtype::kF32;
};

// IEEE half <-> float. The scalar versions are portable bit manipulation; the array versions
// use F16C instructions when the CPU has them and give bit-identical results either way.
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);  // round to nearest even; overflow → ±inf; NaN stays NaN
void half_to_float(const uint16_t* in, float* out, size_t n);
void float_to_half(const float* in, uint16_t* out, size_t n);

}  // namespace kvrag
