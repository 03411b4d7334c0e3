// DenseIndex's files: DIR/dense.json (the metadata, checked field by field) and DIR/dense.faiss
// (Faiss's format, written atomically with a streaming checksum that load() verifies before Faiss
// parses anything); DenseIndex::load and DenseIndex::save.
#include "index/dense_index_internal.h"

#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/splitmix64.h"
#include "index/dense_index.h"
#include "index/embedding_set.h"

namespace kvrag {

namespace fs = std::filesystem;

namespace dense_index_internal {

namespace {

constexpr int kFormatVersion = 1;

// ---- checksum ----------------------------------------------------------------------------------

// A streaming 64-bit checksum (xxhash-style rounds over 8-byte words): detects a damaged
// dense.faiss before Faiss parses it. Not cryptographic.
class Checksum {
 public:
  void update(const void* data, size_t n) {
    if (n == 0) return;  // data may be null then (an empty vector's), and memcpy must not see it
    const auto* p = static_cast<const uint8_t*>(data);
    total_ += n;
    if (npending_ > 0) {  // complete the word started by the previous call
      const size_t take = std::min(n, 8 - npending_);
      std::memcpy(pending_ + npending_, p, take);
      npending_ += take;
      p += take;
      n -= take;
      if (npending_ < 8) return;
      mix(load(pending_));
      npending_ = 0;
    }
    for (; n >= 8; p += 8, n -= 8) mix(load(p));
    std::memcpy(pending_, p, n);
    npending_ = n;
  }
  std::string hex() const {
    uint64_t h = h_;
    uint8_t last[8] = {0};
    std::memcpy(last, pending_, npending_);
    h = round(h, load(last));
    h = round(h, total_);
    return fmt::format("{:016x}", splitmix64_mix(h));
  }
  uint64_t bytes() const { return total_; }

 private:
  static uint64_t load(const uint8_t* p) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  }
  static uint64_t round(uint64_t h, uint64_t w) {
    h ^= w * 0xc2b2ae3d27d4eb4full;
    h = (h << 31) | (h >> 33);
    return h * 0x9e3779b185ebca87ull + 0x27d4eb2f165667c5ull;
  }
  void mix(uint64_t w) { h_ = round(h_, w); }

  uint64_t h_ = 0x9e3779b97f4a7c15ull, total_ = 0;
  uint8_t pending_[8] = {0};
  size_t npending_ = 0;
};

// Faiss's serialiser writing into an AtomicFile through a 1 MiB buffer, checksumming as it goes.
class AtomicIOWriter : public faiss::IOWriter {
 public:
  explicit AtomicIOWriter(AtomicFile& file) : file_(file) { name = file.path(); }
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    const size_t n = size * nitems;
    sum_.update(ptr, n);
    if (buf_.size() + n > kCap) flush();
    if (n >= kCap) {
      file_.write(ptr, n);
    } else {
      buf_.append(static_cast<const char*>(ptr), n);
    }
    return nitems;
  }
  void flush() {
    if (!buf_.empty()) file_.write(buf_);
    buf_.clear();
  }
  const Checksum& checksum() const { return sum_; }

 private:
  static constexpr size_t kCap = size_t(1) << 20;
  AtomicFile& file_;
  std::string buf_;
  Checksum sum_;
};

// Checksum of a whole file, streamed.
Checksum checksum_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open {}: {}", path, std::strerror(errno));
  Checksum sum;
  std::vector<char> buf(size_t(1) << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int err = errno;
      ::close(fd);
      fail("cannot read {}: {}", path, std::strerror(err));
    }
    if (n == 0) break;
    sum.update(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd);
  return sum;
}

}  // namespace

// ---- dense.json ---------------------------------------------------------------------------------

json read_meta(const std::string& dir) {
  const std::string path = dir + "/dense.json";
  std::error_code ec;
  KVRAG_CHECK(fs::exists(path, ec),
              "{}: missing (build the index with `kvrag index build --index {}`)", path, dir);
  json j;
  try {
    j = json::parse(read_file(path));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
  auto check = [&](const char* key, bool ok) {
    KVRAG_CHECK(ok, "{}: \"{}\" is missing or has the wrong type", path, key);
  };
  check("factory", j.is_object() && j.contains("factory") && j["factory"].is_string());
  check("dim", j.contains("dim") && j["dim"].is_number_integer() && j["dim"].get<int64_t>() > 0);
  check("size",
        j.contains("size") && j["size"].is_number_integer() && j["size"].get<int64_t>() >= 0);
  check("metric", j.contains("metric") && j["metric"].is_string());
  KVRAG_CHECK(j["metric"] == "ip", "{}: metric {} is not supported (only \"ip\")", path,
              j["metric"].dump());
  check("fingerprint", j.contains("fingerprint") && j["fingerprint"].is_string());
  for (const char* key : {"nprobe", "ef_search", "rerank"}) {
    check(key, !j.contains(key) || j[key].is_number_integer());
  }
  return j;
}

SearchParams meta_defaults(const json& j) {
  SearchParams p;
  p.nprobe = j.value("nprobe", 0);
  p.ef_search = j.value("ef_search", 0);
  p.rerank = j.value("rerank", -1);
  return p;
}

// Reads DIR/dense.faiss, verifying it against dense.json (bytes and checksum, when recorded,
// before Faiss parses anything; then dimension, size and metric).
std::unique_ptr<faiss::Index> read_index_file(const std::string& dir, const json& meta) {
  const std::string path = dir + "/dense.faiss";
  std::error_code ec;
  KVRAG_CHECK(fs::exists(path, ec),
              "{}: missing (build the index with `kvrag index build --index {}`)", path, dir);
  if (meta.contains("faiss_checksum")) {
    const Checksum sum = checksum_file(path);
    const int64_t want = meta.value("faiss_bytes", int64_t(-1));
    KVRAG_CHECK(
        want < 0 || int64_t(sum.bytes()) == want,
        "{}: {} bytes, but dense.json records {}: the file is damaged or belongs to another build",
        path, sum.bytes(), want);
    KVRAG_CHECK(sum.hex() == meta["faiss_checksum"].get<std::string>(),
                "{}: checksum {} does not match {} recorded in dense.json: the file is damaged or "
                "belongs to another build",
                path, sum.hex(), meta["faiss_checksum"].get<std::string>());
  }
  std::unique_ptr<faiss::Index> index(faiss_call(
      path + ": cannot read the Faiss index", [&] { return faiss::read_index(path.c_str(), 0); }));
  const int64_t dim = meta["dim"], size = meta["size"];
  KVRAG_CHECK(index->d == dim, "{}: dimension {} differs from {} in dense.json", path, index->d,
              dim);
  KVRAG_CHECK(index->ntotal == size, "{}: holds {} vectors, dense.json says {}", path,
              index->ntotal, size);
  KVRAG_CHECK(index->metric_type == faiss::METRIC_INNER_PRODUCT, "{}: not an inner-product index",
              path);
  return index;
}

}  // namespace dense_index_internal

using namespace dense_index_internal;

// ---- load, save --------------------------------------------------------------------------------

std::unique_ptr<DenseIndex> DenseIndex::load(const std::string& dir, const EmbeddingSet* vectors) {
  const json meta = read_meta(dir);
  std::unique_ptr<DenseIndex> out(new DenseIndex());
  out->index_ = read_index_file(dir, meta);
  out->factory_ = meta["factory"].get<std::string>();
  out->fingerprint_ = meta["fingerprint"].get<std::string>();
  out->defaults_ =
      overlay(type_defaults(out->index_.get(), out->exact_scores()), meta_defaults(meta));
  check_params(out->defaults_, (dir + "/dense.json").c_str());
  if (vectors != nullptr) {
    KVRAG_CHECK(vectors->fingerprint() == out->fingerprint_,
                "{}: index built from encoder fingerprint {}, but {} holds vectors of fingerprint "
                "{}: rebuild the index",
                dir, out->fingerprint_, vectors->dir(), vectors->fingerprint());
    KVRAG_CHECK(vectors->dim() == out->dim(),
                "{}: index dimension {} differs from the embeddings' {} in {}", dir, out->dim(),
                vectors->dim(), vectors->dir());
    KVRAG_CHECK(vectors->size() == out->size(),
                "{}: index holds {} vectors, but {} holds {}: rebuild the index", dir, out->size(),
                vectors->dir(), vectors->size());
  }
  out->vectors_ = vectors;
  return out;
}

void DenseIndex::save(const std::string& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  KVRAG_CHECK(!ec, "cannot create index folder {}: {}", dir, ec.message());

  const std::string path = dir + "/dense.faiss";
  AtomicFile file(path);
  AtomicIOWriter writer(file);
  faiss_call(path + ": cannot write the Faiss index",
             [&] { faiss::write_index(index_.get(), &writer); });
  writer.flush();
  file.commit();

  json meta = {{"format", kFormatVersion},
               {"factory", factory_},
               {"dim", dim()},
               {"size", size()},
               {"metric", "ip"},
               {"fingerprint", fingerprint_},
               {"nprobe", defaults_.nprobe},
               {"ef_search", defaults_.ef_search},
               {"rerank", defaults_.rerank},
               {"faiss_type", type_name(*index_)},
               {"faiss_version", fmt::format("{}.{}.{}", FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR,
                                             FAISS_VERSION_PATCH)},
               {"faiss_bytes", writer.checksum().bytes()},
               {"faiss_checksum", writer.checksum().hex()}};
  write_file_atomic(dir + "/dense.json", meta.dump(2) + "\n");
}

}  // namespace kvrag
