// The safetensors format: a memory-mapped, validating reader and an atomic writer.
//
// File layout (https://github.com/huggingface/safetensors): u64 little-endian N, then N bytes
// of JSON header {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {…}},
// then the data area; offsets are relative to the data area.
//
// The reader validates everything before a tensor is handed out: header length against the
// file size, the JSON, dtype names, shape × dtype size = byte length, offsets inside the data
// area and not overlapping. Each failure throws kvrag::Error naming the file (and tensor).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvrag {

enum class DType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);                   // "F32", "BF16", …
std::optional<DType> parse_dtype(std::string_view name);  // nullopt for unknown names

// One tensor inside a mapped file. `data` points into the mapping and lives as long as the
// SafetensorsFile that produced it.
struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
};

std::string shape_string(const std::vector<int64_t>& shape);  // "[2, 3]"

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws Error on any problem.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in data-area order
  const TensorInfo* find(const std::string& name) const;               // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // numel(shape) * dtype_size(dtype) bytes
};

// Writes a safetensors file atomically (see AtomicFile). Names must be unique.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace kvrag
