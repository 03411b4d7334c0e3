#include "prefix/prefix_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

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
  KVRAG_CHECK(h.dtype == "fp16" || h.dtype == "fp32", "{}: dtype \"{}\" (fp16 or fp32)", where,
              h.dtype);
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
  std::vector<torch::Tensor> parts;  // per layer: [B, 2, kvH, P, hd]
  for (int64_t l = 0; l < h.layers; ++l) {
    for (const auto* t : {&prefix.keys[l], &prefix.values[l]}) {
      KVRAG_CHECK(t->sizes() == shape, "prefix store: layer {}: a prefix of shape [{}] for [{}]", l,
                  fmt::join(t->sizes(), ", "), fmt::join(shape, ", "));
    }
    parts.push_back(torch::stack({prefix.keys[l], prefix.values[l]}, 1));
  }
  // [B, L, 2, kvH, P, hd]: record b is row b
  const auto records = torch::stack(parts, 1).to(h.torch_dtype()).contiguous();
  const auto* p = static_cast<const char*>(records.data_ptr());
  out.append(p, p + records.numel() * records.element_size());
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
  auto records = torch::empty({B, h.layers, 2, h.kv_heads, h.entries, h.head_dim},
                              torch::TensorOptions().dtype(h.torch_dtype()));
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
  const auto fp32 = records.to(torch::kFloat32);  // [B, L, 2, kvH, P, hd]
  KVPrefix prefix;
  for (int64_t l = 0; l < h.layers; ++l) {
    prefix.keys.push_back(fp32.select(1, l).select(1, 0).contiguous());
    prefix.values.push_back(fp32.select(1, l).select(1, 1).contiguous());
  }
  return prefix;
}

}  // namespace kvrag
