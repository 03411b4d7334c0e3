#include "prefix/prefix_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <numeric>

#include "core/atomic_file.h"
#include "core/error.h"

namespace kvrag {

namespace {

constexpr const char* kFormat = "kvrag-prefix-store-1";

template <typename T>
T field(const nlohmann::json& j, const char* key, const std::string& where) {
  KVRAG_CHECK(j.contains(key), "{}: no \"{}\"", where, key);
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("{}: \"{}\" is {}, not a {}", where, key, j.at(key).dump(),
         std::is_same_v<T, std::string> ? "string" : "number");
  }
}

// The torch dtype of a store's fp16 or fp32 records.
torch::Dtype float_dtype(const PrefixStoreHeader& h) {
  return h.dtype == "fp16" ? torch::kFloat16 : torch::kFloat32;
}

}  // namespace

nlohmann::json PrefixStoreHeader::to_json() const {
  return {{"format", kFormat},
          {"dtype", dtype},
          {"segments", segments},
          {"layers", layers},
          {"kv_heads", kv_heads},
          {"entries", entries},
          {"head_dim", head_dim},
          {"encoder_fingerprint", encoder_fingerprint},
          {"llm_fingerprint", llm_fingerprint}};
}

PrefixStoreHeader PrefixStoreHeader::from_json(const nlohmann::json& j, const std::string& where) {
  KVRAG_CHECK(j.is_object(), "{}: not a JSON object", where);
  const auto format = field<std::string>(j, "format", where);
  KVRAG_CHECK(format == kFormat, "{}: format \"{}\", expected \"{}\"", where, format, kFormat);
  PrefixStoreHeader h;
  h.dtype = field<std::string>(j, "dtype", where);
  check_prefix_store_dtype(h.dtype, where);
  h.segments = field<int64_t>(j, "segments", where);
  h.layers = field<int64_t>(j, "layers", where);
  h.kv_heads = field<int64_t>(j, "kv_heads", where);
  h.entries = field<int64_t>(j, "entries", where);
  h.head_dim = field<int64_t>(j, "head_dim", where);
  KVRAG_CHECK(h.segments >= 0 && h.layers > 0 && h.kv_heads > 0 && h.entries > 0 &&
                  h.head_dim > 0 && h.layers * h.kv_heads * h.entries * h.head_dim < (1LL << 40),
              "{}: implausible shape: {} segments, {} layers, {} kv heads, {} entries, head dim {}",
              where, h.segments, h.layers, h.kv_heads, h.entries, h.head_dim);
  h.encoder_fingerprint = field<std::string>(j, "encoder_fingerprint", where);
  h.llm_fingerprint = field<std::string>(j, "llm_fingerprint", where);
  return h;
}

void check_prefix_store_dtype(const std::string& dtype, const std::string& where) {
  KVRAG_CHECK(dtype == "fp16" || dtype == "fp32" || dtype == "int8",
              "{}: dtype \"{}\" (fp16, fp32 or int8)", where, dtype);
}

std::string prefix_store_bin(const std::string& dir) { return dir + "/prefixes.bin"; }
std::string prefix_store_json(const std::string& dir) { return dir + "/prefixes.json"; }
std::string prefix_store_partial_bin(const std::string& dir) {
  return dir + "/prefixes.partial.bin";
}
std::string prefix_store_partial_json(const std::string& dir) {
  return dir + "/prefixes.partial.json";
}

void append_prefix_records(const KVPrefix& prefix, const PrefixStoreHeader& h, std::string& out) {
  KVRAG_CHECK(static_cast<int64_t>(prefix.keys.size()) == h.layers &&
                  prefix.values.size() == prefix.keys.size(),
              "prefix store: a prefix of {} layers for a store of {}", prefix.keys.size(),
              h.layers);
  const int64_t B = prefix.keys[0].size(0);
  const std::vector<int64_t> shape{B, h.kv_heads, h.entries, h.head_dim};
  std::vector<torch::Tensor> parts;  // the pieces of a record, in order, as bytes [B, n]
  const auto bytes = [B](const torch::Tensor& t) {
    return t.contiguous().view({B, -1}).view(torch::kUInt8);
  };
  for (int64_t l = 0; l < h.layers; ++l) {
    for (const auto* t : {&prefix.keys[l], &prefix.values[l]}) {
      KVRAG_CHECK(t->sizes() == shape, "prefix store: layer {}: a prefix of shape [{}] for [{}]", l,
                  fmt::join(t->sizes(), ", "), fmt::join(shape, ", "));
    }
    if (h.dtype != "int8") {
      const auto dtype = float_dtype(h);
      parts.push_back(bytes(prefix.keys[l].to(dtype)));
      parts.push_back(bytes(prefix.values[l].to(dtype)));
      continue;
    }
    // keys per channel (over the entries, dim 2), values per entry (over hd, dim 3)
    for (const auto& [t, dim] : {std::pair{prefix.keys[l], 2}, std::pair{prefix.values[l], 3}}) {
      const auto x = t.to(torch::kFloat32);
      const auto scale = x.abs().amax(dim, /*keepdim=*/true) / 127;  // [B, kvH, 1, hd] | [.., P, 1]
      const auto q = torch::where(scale > 0, x / scale, torch::zeros_like(x))
                         .round()
                         .clamp(-127, 127)
                         .to(torch::kInt8);
      parts.push_back(bytes(q));
      parts.push_back(bytes(scale));
    }
  }
  const auto records = torch::cat(parts, 1);  // [B, record_bytes]
  KVRAG_CHECK(records.size(1) == h.record_bytes(), "prefix store: records of {} bytes, not {}",
              records.size(1), h.record_bytes());
  const auto* p = static_cast<const char*>(records.data_ptr());
  out.append(p, p + records.numel());
}

std::unique_ptr<PrefixStore> PrefixStore::open(const std::string& dir) {
  const std::string json_path = prefix_store_json(dir), bin_path = prefix_store_bin(dir);
  if (!std::filesystem::exists(json_path)) return nullptr;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(json_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON ({})", json_path, e.what());
  }
  std::unique_ptr<PrefixStore> s(new PrefixStore());
  s->dir_ = dir;
  s->header_ = PrefixStoreHeader::from_json(j, json_path);
  const int fd = ::open(bin_path.c_str(), O_RDONLY | O_CLOEXEC);
  KVRAG_CHECK(fd >= 0, "{}: cannot open ({}); rebuild it with kvrag index build-prefixes", bin_path,
              std::strerror(errno));
  struct stat st {};
  const int rc = ::fstat(fd, &st);
  const int64_t expected = s->bytes();
  if (rc != 0 || st.st_size != expected) {
    ::close(fd);
    fail(
        "{}: {} bytes, but {} declares {} segments of {} bytes ({}); rebuild it with kvrag index "
        "build-prefixes",
        bin_path, rc == 0 ? int64_t{st.st_size} : -1, json_path, s->header_.segments,
        s->header_.record_bytes(), expected);
  }
  if (expected > 0) {
    void* p = ::mmap(nullptr, static_cast<size_t>(expected), PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail("{}: cannot map ({})", bin_path, std::strerror(err));
    }
    s->data_ = static_cast<const char*>(p);
    s->size_ = static_cast<size_t>(expected);
  }
  ::close(fd);  // the mapping stays
  return s;
}

PrefixStore::~PrefixStore() {
  if (data_ != nullptr) ::munmap(const_cast<char*>(data_), size_);
}

KVPrefix PrefixStore::get(const std::vector<int64_t>& segment_ids) const {
  const auto& h = header_;
  const int64_t B = static_cast<int64_t>(segment_ids.size());
  KVRAG_CHECK(B > 0, "prefix store {}: no segments asked for", dir_);
  auto records = torch::empty({B, h.record_bytes()}, torch::kUInt8);
  auto* out = static_cast<char*>(records.data_ptr());
  const int64_t n = h.record_bytes();
  for (int64_t b = 0; b < B; ++b) {
    const int64_t id = segment_ids[b];
    KVRAG_CHECK(id >= 0 && id < h.segments,
                "prefix store {}: segment {} is outside its {} segments (built for another "
                "segment store? rebuild it with kvrag index build-prefixes)",
                dir_, id, h.segments);
    std::memcpy(out + b * n, data_ + id * n, static_cast<size_t>(n));
  }
  // The record's pieces in order (append_prefix_records), each [B, ...] in its dtype.
  int64_t offset = 0;
  const auto take = [&](torch::Dtype dtype, std::vector<int64_t> shape) {
    const int64_t count =
        std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
    const int64_t size = count * static_cast<int64_t>(c10::elementSize(dtype));
    shape.insert(shape.begin(), B);
    auto t = records.narrow(1, offset, size).contiguous().view(dtype).view(shape);
    offset += size;
    return t.to(torch::kFloat32);
  };
  const int64_t kvH = h.kv_heads, P = h.entries, hd = h.head_dim;
  KVPrefix prefix;
  for (int64_t l = 0; l < h.layers; ++l) {
    if (h.dtype != "int8") {
      const auto dtype = float_dtype(h);
      prefix.keys.push_back(take(dtype, {kvH, P, hd}));
      prefix.values.push_back(take(dtype, {kvH, P, hd}));
      continue;
    }
    auto k = take(torch::kInt8, {kvH, P, hd});
    prefix.keys.push_back(k * take(torch::kFloat32, {kvH, 1, hd}));
    auto v = take(torch::kInt8, {kvH, P, hd});
    prefix.values.push_back(v * take(torch::kFloat32, {kvH, P, 1}));
  }
  return prefix;
}

}  // namespace kvrag
