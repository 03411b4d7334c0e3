// Safetensors: a memory-mapped reader that validates the whole header before handing out a
// tensor, and a writer producing the same layout as Hugging Face's `safetensors` package.
#include "checkpoint/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>

#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_excerpt.h"

namespace kvrag {

using nlohmann::json;

// --- dtypes ------------------------------------------------------------------------------------

namespace {

struct DTypeEntry {
  DType dtype;
  const char* name;
  size_t size;
};

// The names are those of the safetensors spec.
constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},   {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

const DTypeEntry& dtype_entry(DType dtype) {
  for (const auto& e : kDTypes)
    if (e.dtype == dtype) return e;
  fail("invalid DType value {}", static_cast<int>(dtype));
}

}  // namespace

size_t dtype_size(DType dtype) { return dtype_entry(dtype).size; }
const char* dtype_name(DType dtype) { return dtype_entry(dtype).name; }

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& e : kDTypes)
    if (name == e.name) return e.dtype;
  return std::nullopt;
}

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // cannot overflow: the reader checked numel * size <= file
  return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// --- reader ------------------------------------------------------------------------------------

namespace {

// HF refuses headers above 100 MB; a larger length is a corrupt or hostile file.
constexpr uint64_t kMaxHeaderSize = 100'000'000;

uint64_t read_le64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void write_le64(uint64_t v, char out[8]) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

// numel(shape) * elem_size, or nullopt on overflow (or a negative dimension).
std::optional<uint64_t> checked_nbytes(const std::vector<int64_t>& shape, size_t elem_size) {
  uint64_t n = elem_size;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (__builtin_mul_overflow(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  // numel() is an int64_t; keep the element count representable as well.
  if (elem_size > 0 && n / elem_size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    return std::nullopt;
  return n;
}

// Parses the header JSON, recording the first duplicated key of any object: nlohmann keeps the
// last value of a repeated key silently, which would hide a second tensor of the same name.
json parse_header(const char* begin, const char* end, const std::string& path) {
  std::vector<std::set<std::string>> open_objects;  // keys seen so far, innermost last
  std::string duplicate;
  bool duplicate_top_level = false;
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && duplicate.empty() &&
            !open_objects.back().insert(parsed.get<std::string>()).second) {
          duplicate = parsed.get<std::string>();
          duplicate_top_level = open_objects.size() == 1;
        }
        break;
      default:
        break;
    }
    return true;
  };

  json header;
  try {
    header = json::parse(begin, end, callback);
  } catch (const json::exception& e) {
    fail("safetensors file {}: header is not valid JSON: {}", path, e.what());
  }
  if (!duplicate.empty()) {
    if (duplicate_top_level)
      fail("safetensors file {}: duplicate tensor name \"{}\"", path, duplicate);
    fail("safetensors file {}: duplicate key \"{}\" in header", path, duplicate);
  }
  if (!header.is_object()) fail("safetensors file {}: header is not a JSON object", path);
  return header;
}

// A JSON integer in [0, INT64_MAX], or nullopt.
std::optional<int64_t> as_nonnegative(const json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (i < 0) return std::nullopt;
    return i;
  }
  return std::nullopt;
}

// Fills `t` (all but `data`) from one header entry; `begin`/`end` are its offsets.
void parse_entry(const std::string& name, const json& entry, uint64_t data_size, TensorInfo& t,
                 uint64_t& begin, uint64_t& end) {
  if (!entry.is_object()) fail("header entry is not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(key)) fail("header entry lacks \"{}\"", key);

  const json& dtype = entry["dtype"];
  if (!dtype.is_string()) fail("dtype is not a string: {}", json_excerpt(dtype));
  std::optional<DType> parsed = parse_dtype(dtype.get<std::string>());
  if (!parsed) fail("unknown dtype \"{}\"", dtype.get<std::string>());
  t.name = name;
  t.dtype = *parsed;

  const json& shape = entry["shape"];
  if (!shape.is_array()) fail("shape is not an array: {}", json_excerpt(shape));
  for (const json& d : shape) {
    std::optional<int64_t> dim = as_nonnegative(d);
    if (!dim)
      fail("shape {} has a dimension that is not a non-negative integer", json_excerpt(shape));
    t.shape.push_back(*dim);
  }

  const json& offsets = entry["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !as_nonnegative(offsets[0]) ||
      !as_nonnegative(offsets[1]))
    fail("data_offsets {} is not [begin, end] of non-negative integers", json_excerpt(offsets));
  begin = static_cast<uint64_t>(*as_nonnegative(offsets[0]));
  end = static_cast<uint64_t>(*as_nonnegative(offsets[1]));
  if (begin > end) fail("data_offsets [{}, {}] has begin > end", begin, end);
  if (end > data_size)
    fail("data_offsets [{}, {}] run past the end of the data area ({} bytes)", begin, end,
         data_size);

  std::optional<uint64_t> nbytes = checked_nbytes(t.shape, dtype_size(t.dtype));
  if (!nbytes)
    fail("shape {} of {} overflows the element count", shape_string(t.shape), dtype_name(t.dtype));
  if (*nbytes != end - begin)
    fail("shape {} of {} needs {} bytes but data_offsets [{}, {}] hold {}", shape_string(t.shape),
         dtype_name(t.dtype), *nbytes, begin, end, end - begin);
  t.nbytes = static_cast<size_t>(*nbytes);
}

}  // namespace

SafetensorsContents parse_safetensors(const std::byte* data, size_t size, const std::string& path) {
  SafetensorsContents out;
  const uint64_t file_size = size;
  if (file_size < 8)
    fail("safetensors file {}: file is truncated ({} bytes, less than the 8-byte header length)",
         path, file_size);
  const auto* bytes = reinterpret_cast<const unsigned char*>(data);

  // Header length and bounds.
  const uint64_t header_size = read_le64(bytes);
  if (header_size > kMaxHeaderSize)
    fail("safetensors file {}: header length {} is too large (limit {}; file size {})", path,
         header_size, kMaxHeaderSize, file_size);
  if (8 + header_size > file_size)
    fail("safetensors file {}: header length {} runs past the end of the file ({} bytes)", path,
         header_size, file_size);
  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  json header = parse_header(header_begin, header_begin + header_size, path);

  const uint64_t data_offset = 8 + header_size;
  const uint64_t data_size = file_size - data_offset;
  const std::byte* data_area = reinterpret_cast<const std::byte*>(bytes + data_offset);

  // Entries.
  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        fail("safetensors file {}: __metadata__ is not an object of strings", path);
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string())
          fail("safetensors file {}: __metadata__ value of \"{}\" is not a string: {}", path, key,
               json_excerpt(value));
        out.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    TensorInfo t;
    uint64_t begin = 0, end = 0;
    try {
      parse_entry(name, entry, data_size, t, begin, end);
    } catch (Error& e) {
      throw e.with_context(fmt::format("safetensors file {}: tensor {}", path, name));
    }
    t.data = data_area + begin;
    spans.push_back({begin, end, out.tensors.size()});
    out.tensors.push_back(std::move(t));
  }

  // Overlaps: sort by offset and compare each non-empty tensor with the furthest-reaching
  // non-empty tensor before it. Zero-byte tensors occupy nothing and may sit anywhere.
  std::sort(spans.begin(), spans.end(), [&](const Span& a, const Span& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return out.tensors[a.index].name < out.tensors[b.index].name;
  });
  const Span* reach = nullptr;
  for (const Span& s : spans) {
    if (s.begin == s.end) continue;
    if (reach && s.begin < reach->end)
      fail("safetensors file {}: tensors {} [{}, {}] and {} [{}, {}] overlap", path,
           out.tensors[reach->index].name, reach->begin, reach->end, out.tensors[s.index].name,
           s.begin, s.end);
    if (!reach || s.end > reach->end) reach = &s;
  }

  // Keep tensors in data-area order.
  std::vector<TensorInfo> ordered;
  ordered.reserve(spans.size());
  for (const Span& s : spans) ordered.push_back(std::move(out.tensors[s.index]));
  out.tensors = std::move(ordered);
  return out;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;

  // Map the whole file; the descriptor is not needed once mapped.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("safetensors file {}: cannot open: {}", path, std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail("safetensors file {}: cannot stat: {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("safetensors file {}: not a regular file", path);
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail("safetensors file {}: file is truncated ({} bytes, less than the 8-byte header length)",
         path, file_size);
  }
  void* map = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_err = errno;
  ::close(fd);
  if (map == MAP_FAILED) fail("safetensors file {}: cannot mmap: {}", path, std::strerror(map_err));
  f->map_ = map;  // from here on the destructor unmaps, also when validation throws
  f->map_size_ = file_size;
  SafetensorsContents contents =
      parse_safetensors(static_cast<const std::byte*>(map), file_size, path);
  f->tensors_ = std::move(contents.tensors);
  f->metadata_ = std::move(contents.metadata);
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, map_size_);
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

// --- writer ------------------------------------------------------------------------------------

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Header: "__metadata__" first (as HF writes it), then the tensors in the given order.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;

  std::set<std::string> names;
  std::vector<size_t> sizes;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    if (t.name.empty()) fail("safetensors file {}: tensor with an empty name", path);
    if (t.name == "__metadata__")
      fail("safetensors file {}: \"__metadata__\" is not a valid tensor name", path);
    if (!names.insert(t.name).second)
      fail("safetensors file {}: duplicate tensor name \"{}\"", path, t.name);
    std::optional<uint64_t> nbytes = checked_nbytes(t.shape, dtype_size(t.dtype));
    if (!nbytes)
      fail("safetensors file {}: tensor {}: invalid shape {}", path, t.name, shape_string(t.shape));
    if (*nbytes > 0 && t.data == nullptr && !t.fill)
      fail("safetensors file {}: tensor {}: no data for {} bytes", path, t.name, *nbytes);
    header[t.name] = {{"dtype", dtype_name(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + *nbytes}}};
    offset += *nbytes;
    sizes.push_back(static_cast<size_t>(*nbytes));
  }

  std::string text;
  try {
    text = header.dump();  // strict: invalid UTF-8 in a name throws
  } catch (const nlohmann::json::exception& e) {
    fail("safetensors file {}: cannot encode header: {}", path, e.what());
  }
  // Pad so that the data area starts at a multiple of 8 (8 + N ≡ 0 mod 8).
  text.append((8 - text.size() % 8) % 8, ' ');

  char length[8];
  write_le64(text.size(), length);
  AtomicFile out(path);
  out.write(length, sizeof(length));
  out.write(text);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (sizes[i] == 0) continue;
    if (tensors[i].data != nullptr) {
      out.write(tensors[i].data, sizes[i]);
    } else {
      std::vector<char> bytes(sizes[i]);
      tensors[i].fill(bytes.data());
      out.write(bytes.data(), sizes[i]);
    }
  }
  out.commit();
}

}  // namespace kvrag
