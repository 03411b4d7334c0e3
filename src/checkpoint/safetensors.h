// The safetensors format: a memory-mapped, validating reader and an atomic writer.
//
// File layout (https://github.com/huggingface/safetensors): u64 little-endian N, then N bytes
// of JSON header {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {…}},
// then the data area; offsets are relative to the data area.
//
// The reader validates everything before a tensor is handed out: header length against the
// file size, the JSON, dtype names, shape × dtype size = byte length, offsets inside the data
// area and not overlapping, no duplicate names, "__metadata__" a string → string object.
// Each failure throws kvrag::Error naming the file (and tensor). Zero-element tensors are
// allowed. Gaps between tensors in the data area are tolerated (HF's reader rejects them).
//
// No tensor data is copied: the file is mapped read-only (PROT_READ, MAP_PRIVATE) and
// TensorInfo::data points into the mapping.
//
// ALIGNMENT: TensorInfo::data has no alignment guarantee. The data area starts at 8 + N, and
// writers that pad the header (HF, write_safetensors) make that a multiple of 8, but tensor
// offsets inside it are arbitrary. Consumers must memcpy the bytes into an aligned buffer
// (e.g. a freshly allocated tensor) before viewing them as float / uint16_t / int64_t, or check
// reinterpret_cast<uintptr_t>(data) % dtype_size(dtype) == 0 first; never dereference data as a
// typed pointer unchecked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvrag {

enum class DType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);                      // "F32", "BF16", …
std::optional<DType> parse_dtype(std::string_view name);  // nullopt for unknown names

// One tensor inside a mapped file. `data` points into the mapping (read-only, possibly
// unaligned — see ALIGNMENT above) and lives as long as the SafetensorsFile that produced it.
// nbytes == numel() * dtype_size(dtype) always holds for tensors handed out by the reader.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
};

std::string shape_string(const std::vector<int64_t>& shape);  // "[2, 3]"

// What a valid safetensors file holds: its tensors in data-area order and its metadata.
struct SafetensorsContents {
  std::vector<TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

// Validates a whole safetensors file held in memory at data[0, size) — the mapped file, or a
// fuzzer's input — as open() does; errors name `path`. The tensors' data point into `data`.
SafetensorsContents parse_safetensors(const std::byte* data, size_t size, const std::string& path);

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
  const void* data;  // numel(shape) * dtype_size(dtype) bytes (may be null when that is 0)
  // Instead of data (null then): writes the tensor's bytes into a buffer of that size, called
  // when the tensor is written, so that a tensor made on the fly (a reordered copy) exists one at
  // a time.
  std::function<void(void* out)> fill = {};
};

// Writes a safetensors file atomically (see AtomicFile): the JSON header is padded with
// spaces to a multiple of 8 bytes (as HF does) and the tensors follow contiguously in the
// given order. Names must be unique, non-empty and not "__metadata__"; shapes non-negative.
// Throws Error naming `path` (and the tensor) otherwise.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace kvrag
