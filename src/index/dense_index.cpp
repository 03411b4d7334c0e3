// DenseIndex: building, saving, loading, searching (with float16 re-ranking) and merging Faiss
// indexes over an EmbeddingSet. Faiss 1.7.3 (Debian): `faiss::Index::idx_t`; its exceptions
// (faiss::FaissException) never leave this file — they become kvrag::Error naming the file or
// the step.
#include "index/dense_index.h"

#include <cxxabi.h>
#include <faiss/Clustering.h>
#include <faiss/IVFlib.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexFlatCodes.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/DistanceComputer.h>
#include <faiss/impl/HNSW.h>
#include <faiss/impl/io.h>
#include <faiss/utils/Heap.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#include <faiss/invlists/InvertedLists.h>
#include <faiss/utils/distances.h>
#include <fcntl.h>
#include <immintrin.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <typeinfo>
#include <unordered_set>

#include "core/atomic_file.h"
#include "core/error.h"
#include "index/embedding_set.h"

namespace kvrag {

namespace fs = std::filesystem;
using idx_t = faiss::Index::idx_t;
using json = nlohmann::json;

namespace {

constexpr int kFormatVersion = 1;
constexpr int64_t kFlatMaxVectors = 100000;  // "auto": exact search below this size
constexpr int kDefaultRerankDepth = 256;      // compressed indexes: candidates re-ranked
constexpr int kTwoLevelAbove = 256;           // nlist above which k-means is two-level

// ---- small helpers ----------------------------------------------------------------------------

// Runs f(), turning Faiss's exceptions (and allocation failures, which a corrupt size field can
// cause) into Error with `what` as context.
template <typename F>
auto faiss_call(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const faiss::FaissException& e) {
    fail("{}: {}", what, e.what());
  } catch (const std::bad_alloc&) {
    fail("{}: out of memory", what);
  }
}

std::string type_name(const faiss::Index& index) {
  const char* mangled = typeid(index).name();
  int status = 0;
  char* s = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string out = status == 0 && s != nullptr ? s : mangled;
  std::free(s);
  if (out.rfind("faiss::", 0) == 0) out = out.substr(7);
  return out;
}

// The IVF index inside `index` (itself, or under an IndexPreTransform), or null.
faiss::IndexIVF* find_ivf(faiss::Index* index) {
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) index = pt->index;
  return dynamic_cast<faiss::IndexIVF*>(index);
}

// The HNSW graph whose efSearch governs a search of `index`: the index's own (HNSW32) or its
// IVF coarse quantizer's (IVF…_HNSW32), or null.
faiss::IndexHNSW* find_hnsw(faiss::Index* index) {
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) index = pt->index;
  if (auto* h = dynamic_cast<faiss::IndexHNSW*>(index)) return h;
  if (auto* ivf = dynamic_cast<faiss::IndexIVF*>(index)) return dynamic_cast<faiss::IndexHNSW*>(ivf->quantizer);
  return nullptr;
}

// A streaming 64-bit checksum (xxhash-style rounds over 8-byte words): detects a damaged
// dense.faiss before Faiss parses it. Not cryptographic.
class Checksum {
 public:
  void update(const void* data, size_t n) {
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
    // splitmix64 finaliser
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return fmt::format("{:016x}", h);
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

// ---- dense.json ---------------------------------------------------------------------------------

json read_meta(const std::string& dir) {
  const std::string path = dir + "/dense.json";
  std::error_code ec;
  KVRAG_CHECK(fs::exists(path, ec), "{}: missing (build the index with `kvrag index build --index {}`)", path, dir);
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
  check("size", j.contains("size") && j["size"].is_number_integer() && j["size"].get<int64_t>() >= 0);
  check("metric", j.contains("metric") && j["metric"].is_string());
  KVRAG_CHECK(j["metric"] == "ip", "{}: metric {} is not supported (only \"ip\")", path, j["metric"].dump());
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
  KVRAG_CHECK(fs::exists(path, ec), "{}: missing (build the index with `kvrag index build --index {}`)", path, dir);
  if (meta.contains("faiss_checksum")) {
    const Checksum sum = checksum_file(path);
    const int64_t want = meta.value("faiss_bytes", int64_t(-1));
    KVRAG_CHECK(want < 0 || int64_t(sum.bytes()) == want,
                "{}: {} bytes, but dense.json records {}: the file is damaged or belongs to another build", path,
                sum.bytes(), want);
    KVRAG_CHECK(sum.hex() == meta["faiss_checksum"].get<std::string>(),
                "{}: checksum {} does not match {} recorded in dense.json: the file is damaged or belongs to another "
                "build",
                path, sum.hex(), meta["faiss_checksum"].get<std::string>());
  }
  std::unique_ptr<faiss::Index> index(
      faiss_call(path + ": cannot read the Faiss index", [&] { return faiss::read_index(path.c_str(), 0); }));
  const int64_t dim = meta["dim"], size = meta["size"];
  KVRAG_CHECK(index->d == dim, "{}: dimension {} differs from {} in dense.json", path, index->d, dim);
  KVRAG_CHECK(index->ntotal == size, "{}: holds {} vectors, dense.json says {}", path, index->ntotal, size);
  KVRAG_CHECK(index->metric_type == faiss::METRIC_INNER_PRODUCT, "{}: not an inner-product index", path);
  return index;
}

// ---- training -------------------------------------------------------------------------------------

using Progress = std::function<void(const std::string&, int64_t, int64_t)>;

// m distinct row ids of [0, n), sorted, chosen by `seed` (Floyd's algorithm).
std::vector<int64_t> sample_ids(int64_t n, int64_t m, uint64_t seed) {
  std::vector<int64_t> out;
  if (m >= n) {
    out.resize(n);
    for (int64_t i = 0; i < n; ++i) out[i] = i;
    return out;
  }
  std::mt19937_64 rng(seed);
  std::unordered_set<int64_t> chosen;
  chosen.reserve(static_cast<size_t>(m) * 2);
  for (int64_t j = n - m; j < n; ++j) {
    const auto t = static_cast<int64_t>((static_cast<unsigned __int128>(rng()) * uint64_t(j + 1)) >> 64);
    if (!chosen.insert(t).second) chosen.insert(j);
  }
  out.assign(chosen.begin(), chosen.end());
  std::sort(out.begin(), out.end());
  return out;
}

// Spherical k-means (unit-norm centroids, inner-product assignment) of x[n × d] into k.
std::vector<float> spherical_kmeans(int d, int64_t n, const float* x, int64_t k, uint64_t seed, int niter) {
  faiss::ClusteringParameters cp;
  cp.niter = niter;
  cp.spherical = true;
  cp.seed = static_cast<int>(seed & 0x7fffffff);
  cp.min_points_per_centroid = 1;    // the caller sized the sample; no warnings on stderr
  cp.max_points_per_centroid = 256;  // Faiss subsamples beyond this
  faiss::Clustering clus(d, static_cast<int>(k), cp);
  faiss::IndexFlatIP assigner(d);
  faiss_call("k-means", [&] { clus.train(n, x, assigner); });
  return clus.centroids;
}

// ---- kernels ---------------------------------------------------------------------------------------
//
// Debian's libfaiss is a generic x86-64 (SSE2) build: its per-vector distance functions are
// scalar loops (one 768-d inner product takes about 1 µs), which makes Faiss's own PQ encoding,
// PQ training and HNSW assignment of millions of vectors take hours. Building therefore goes
// through the kernels below (AVX + FMA when the CPU has them, portable loops otherwise) and
// through Faiss's BLAS paths (knn_inner_product), which are fast; searching stays in Faiss.

bool cpu_has_avx_fma() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("fma");
  }();
  return has;
}

float dot_portable(const float* a, const float* b, size_t d) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // independent sums: the compiler vectorises these
  size_t i = 0;
  for (; i + 8 <= d; i += 8) {
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  }
  float r = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < d; ++i) r += a[i] * b[i];
  return r;
}

__attribute__((target("avx,fma"))) float dot_avx(const float* a, const float* b, size_t d) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  size_t i = 0;
  for (; i + 32 <= d; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= d; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
  __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  float r = _mm_cvtss_f32(h);
  for (; i < d; ++i) r += a[i] * b[i];
  return r;
}

float dot(const float* a, const float* b, size_t d) {
  return cpu_has_avx_fma() ? dot_avx(a, b, d) : dot_portable(a, b, d);
}

// The nearest of k centroids (k a multiple of 8, at most kMaxK) to x[dsub] in squared L2, from
// the centroids transposed (ct[j·k + c]) and their squared norms: argmin_c ‖c‖² − 2⟨x, c⟩, ties
// to the lowest c. *score receives the minimum (‖x − c‖² − ‖x‖²). Two passes — all k values,
// then the first position of their minimum — keep the loop free of a serial argmin chain.
constexpr int kMaxK = 1024;

int nearest_portable(const float* x, const float* ct, const float* norms, int dsub, int k, float* score) {
  float dist[kMaxK] = {};
  for (int c = 0; c < k; ++c) dist[c] = norms[c];
  for (int j = 0; j < dsub; ++j) {
    const float xj = -2.0f * x[j];
    const float* row = ct + size_t(j) * k;
    for (int c = 0; c < k; ++c) dist[c] += xj * row[c];  // vectorised by the compiler
  }
  int best = 0;
  for (int c = 1; c < k; ++c) {
    if (dist[c] < dist[best]) best = c;
  }
  *score = dist[best];
  return best;
}

__attribute__((target("avx,fma"))) int nearest_avx(const float* x, const float* ct, const float* norms, int dsub, int k,
                                                   float* score) {
  alignas(32) float dist[kMaxK];
  float xs[16];
  const bool small = dsub <= 16;  // broadcasts hoisted out of the loop
  if (small) {
    for (int j = 0; j < dsub; ++j) xs[j] = -2.0f * x[j];
  }
  __m256 mn = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  for (int c0 = 0; c0 < k; c0 += 8) {
    __m256 acc = _mm256_loadu_ps(norms + c0);
    for (int j = 0; j < dsub; ++j) {
      const __m256 xj = small ? _mm256_broadcast_ss(&xs[j]) : _mm256_set1_ps(-2.0f * x[j]);
      acc = _mm256_fmadd_ps(xj, _mm256_loadu_ps(ct + size_t(j) * k + c0), acc);
    }
    _mm256_store_ps(dist + c0, acc);
    mn = _mm256_min_ps(mn, acc);
  }
  __m128 h = _mm_min_ps(_mm256_castps256_ps128(mn), _mm256_extractf128_ps(mn, 1));
  h = _mm_min_ps(h, _mm_movehl_ps(h, h));
  h = _mm_min_ss(h, _mm_shuffle_ps(h, h, 1));
  const float m = _mm_cvtss_f32(h);
  const __m256 mv = _mm256_set1_ps(m);
  *score = m;
  for (int c0 = 0; c0 < k; c0 += 8) {
    const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_load_ps(dist + c0), mv, _CMP_EQ_OQ));
    if (mask != 0) return c0 + __builtin_ctz(static_cast<unsigned>(mask));
  }
  return 0;  // unreachable for finite inputs
}

int nearest(const float* x, const float* ct, const float* norms, int dsub, int k, float* score) {
  return cpu_has_avx_fma() ? nearest_avx(x, ct, norms, dsub, k, score) : nearest_portable(x, ct, norms, dsub, k, score);
}

// Centroids [k × d] → transposed [d × kpad] and squared norms [kpad], k padded to a multiple of
// 8 with centroids that never win (norm +inf).
void transpose_centroids(const float* c, int64_t k, int d, std::vector<float>& ct, std::vector<float>& norms) {
  const int64_t kpad = (k + 7) / 8 * 8;
  ct.assign(size_t(d) * kpad, 0.0f);
  norms.assign(kpad, std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < k; ++i) {
    float sq = 0;
    for (int j = 0; j < d; ++j) {
      ct[size_t(j) * kpad + i] = c[i * d + j];
      sq += c[i * d + j] * c[i * d + j];
    }
    norms[i] = sq;
  }
}

// PQ encoding (8-bit codes) with nearest(): what ProductQuantizer::compute_code computes.
class PqEncoder {
 public:
  static bool supports(const faiss::ProductQuantizer& pq) {
    return pq.nbits == 8 && pq.ksub % 8 == 0 && pq.ksub <= size_t(kMaxK);
  }

  explicit PqEncoder(const faiss::ProductQuantizer& pq)
      : m_(static_cast<int>(pq.M)), dsub_(static_cast<int>(pq.dsub)), ksub_(static_cast<int>(pq.ksub)) {
    ct_.resize(size_t(m_) * dsub_ * ksub_);
    norms_.resize(size_t(m_) * ksub_);
    std::vector<float> ct, norms;
    for (int m = 0; m < m_; ++m) {
      transpose_centroids(pq.get_centroids(m, 0), ksub_, dsub_, ct, norms);
      std::copy(ct.begin(), ct.end(), ct_.begin() + size_t(m) * dsub_ * ksub_);
      std::copy(norms.begin(), norms.end(), norms_.begin() + size_t(m) * ksub_);
    }
  }
  void encode(const float* x, uint8_t* code) const {
    float score;
    for (int m = 0; m < m_; ++m) {
      code[m] = static_cast<uint8_t>(nearest(x + m * dsub_, &ct_[size_t(m) * dsub_ * ksub_], &norms_[size_t(m) * ksub_],
                                             dsub_, ksub_, &score));
    }
  }

 private:
  int m_, dsub_, ksub_;
  std::vector<float> ct_, norms_;  // per sub-quantizer: [dsub × ksub], [ksub]
};

// A minimal Index for Faiss's k-means (Clustering::train calls reset, add and search with k = 1):
// the nearest centroid in squared L2 by nearest(). Trains PQ codebooks (ProductQuantizer::
// assign_index) many times faster than Faiss's IndexFlatL2 on this build. Never stored.
struct KernelL2Assigner : faiss::Index {
  explicit KernelL2Assigner(int d) : faiss::Index(d, faiss::METRIC_L2) { is_trained = true; }
  void add(idx_t n, const float* x) override {
    centroids.insert(centroids.end(), x, x + size_t(n) * d);
    ntotal += n;
    transpose_centroids(centroids.data(), ntotal, d, ct, norms);
  }
  void reset() override {
    centroids.clear();
    ntotal = 0;
  }
  void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
              const faiss::SearchParameters* params = nullptr) const override {
    FAISS_THROW_IF_NOT_MSG(k == 1 && ntotal > 0 && ntotal <= kMaxK, "KernelL2Assigner: k must be 1, ntotal ≤ 1024");
    const int kpad = static_cast<int>(norms.size());
#pragma omp parallel for if (n > 256)
    for (idx_t i = 0; i < n; ++i) {
      const float* xi = x + i * d;
      float score;
      labels[i] = nearest(xi, ct.data(), norms.data(), d, kpad, &score);
      distances[i] = score + dot(xi, xi, d);
    }
  }
  std::vector<float> centroids, ct, norms;
};

// Assigns vectors to the nearest of nlist unit-norm coarse centroids (maximum inner product) with
// BLAS. Up to 2048 lists, exactly. Above, in two levels: the centroids are grouped under √nlist
// k-means "super-centroids"; a vector is compared with all super-centroids, then with the
// centroids of its kProbe best groups only — about 2·√nlist·(1 + kProbe) products instead of
// nlist, and the same list as exact search for all but a small fraction of the vectors (which
// then sit in a near-best list, where a search probing it still finds them).
class CoarseAssigner {
 public:
  static constexpr int kProbe = 6;

  CoarseAssigner(std::vector<float> centroids, int64_t nlist, int d, uint64_t seed)
      : d_(d), nlist_(nlist), centroids_(std::move(centroids)) {
    if (nlist_ <= 2048) return;
    const int64_t k1 = std::llround(std::sqrt(double(nlist_)));
    top_ = spherical_kmeans(d_, nlist_, centroids_.data(), k1, seed, 20);
    std::vector<float> dis(nlist_);
    std::vector<idx_t> g(nlist_);
    faiss_call("grouping the coarse centroids",
               [&] { faiss::knn_inner_product(centroids_.data(), top_.data(), d_, nlist_, k1, 1, dis.data(), g.data()); });
    members_.resize(k1);
    for (int64_t c = 0; c < nlist_; ++c) members_[g[c]].push_back(c);
    group_centroids_.resize(k1);
    for (int64_t t = 0; t < k1; ++t) {
      for (int64_t c : members_[t]) {
        group_centroids_[t].insert(group_centroids_[t].end(), &centroids_[c * d_], &centroids_[(c + 1) * d_]);
      }
    }
  }

  const std::vector<float>& centroids() const { return centroids_; }

  void assign(int64_t n, const float* x, idx_t* out) const {
    std::vector<float> best(n);
    if (top_.empty()) {
      faiss_call("coarse assignment",
                 [&] { faiss::knn_inner_product(x, centroids_.data(), d_, n, nlist_, 1, best.data(), out); });
      return;
    }
    const int64_t k1 = static_cast<int64_t>(members_.size());
    const int probe = static_cast<int>(std::min<int64_t>(kProbe, k1));
    std::vector<float> tdis(size_t(n) * probe);
    std::vector<idx_t> tid(size_t(n) * probe);
    faiss_call("coarse assignment",
               [&] { faiss::knn_inner_product(x, top_.data(), d_, n, k1, probe, tdis.data(), tid.data()); });
    // Rows probing each group, then one BLAS product per group.
    std::vector<std::vector<int64_t>> rows(k1);
    for (int64_t i = 0; i < n; ++i) {
      for (int p = 0; p < probe; ++p) {
        if (tid[i * probe + p] >= 0) rows[tid[i * probe + p]].push_back(i);
      }
    }
    std::fill(best.begin(), best.end(), -std::numeric_limits<float>::infinity());
    std::fill(out, out + n, idx_t(-1));
    std::vector<float> buf, gdis;
    std::vector<idx_t> gid;
    for (int64_t t = 0; t < k1; ++t) {
      const auto& r = rows[t];
      if (r.empty() || members_[t].empty()) continue;
      buf.resize(r.size() * d_);
      for (size_t j = 0; j < r.size(); ++j) std::memcpy(&buf[j * d_], x + r[j] * d_, sizeof(float) * d_);
      gdis.resize(r.size());
      gid.resize(r.size());
      faiss_call("coarse assignment", [&] {
        faiss::knn_inner_product(buf.data(), group_centroids_[t].data(), d_, r.size(), members_[t].size(), 1, gdis.data(),
                                 gid.data());
      });
      for (size_t j = 0; j < r.size(); ++j) {
        const int64_t i = r[j];
        const idx_t c = members_[t][gid[j]];
        if (gdis[j] > best[i] || (gdis[j] == best[i] && c < out[i])) {
          best[i] = gdis[j];
          out[i] = c;
        }
      }
    }
  }

 private:
  int d_;
  int64_t nlist_;
  std::vector<float> centroids_;                    // [nlist × d]
  std::vector<float> top_;                          // [k1 × d]; empty: exact assignment
  std::vector<std::vector<int64_t>> members_;       // centroid ids of each group
  std::vector<std::vector<float>> group_centroids_;  // their vectors, contiguous
};

// The IVF index inside `index` whose vectors kvrag adds itself (coarse assignment by
// CoarseAssigner; PQ codes by PqEncoder): inner-product IVF with a flat or HNSW quantizer and
// no direct map. Null for anything else (Faiss adds those).
faiss::IndexIVF* fast_add_ivf(faiss::Index* index) {
  faiss::IndexIVF* ivf = find_ivf(index);
  if (ivf == nullptr || !ivf->is_trained || ivf->metric_type != faiss::METRIC_INNER_PRODUCT) return nullptr;
  if (ivf->quantizer->metric_type != faiss::METRIC_INNER_PRODUCT) return nullptr;
  if (!dynamic_cast<faiss::IndexFlat*>(ivf->quantizer) && !dynamic_cast<faiss::IndexHNSWFlat*>(ivf->quantizer)) return nullptr;
  if (ivf->direct_map.type != faiss::DirectMap::NoMap) return nullptr;
  return ivf;
}

// Adds vectors to an index, in batches: Faiss's add, or kvrag's path for fast_add_ivf indexes.
class Adder {
 public:
  Adder(faiss::Index* index, uint64_t seed) : index_(index), ivf_(fast_add_ivf(index)) {
    if (ivf_ == nullptr) return;
    std::vector<float> c(ivf_->nlist * size_t(ivf_->d));
    faiss_call("reading the coarse centroids", [&] { ivf_->quantizer->reconstruct_n(0, ivf_->nlist, c.data()); });
    assigner_ = std::make_unique<CoarseAssigner>(std::move(c), ivf_->nlist, ivf_->d, seed);
    if (auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(ivf_); pq != nullptr && PqEncoder::supports(pq->pq)) {
      pq_ = pq;
      encoder_ = std::make_unique<PqEncoder>(pq->pq);
    }
  }

  void add(int64_t n, const float* x) {
    if (ivf_ == nullptr) {
      index_->add(n, x);
      return;
    }
    auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index_);
    std::unique_ptr<const float[]> owned;
    const float* xt = x;
    if (pt != nullptr) {
      xt = pt->apply_chain(n, x);
      if (xt != x) owned.reset(xt);
    }
    std::vector<idx_t> lists(n);
    assigner_->assign(n, xt, lists.data());
    if (encoder_) {
      const int d = ivf_->d;
      const size_t cs = pq_->code_size;
      std::vector<uint8_t> codes(n * cs);
      const float* c = assigner_->centroids().data();
#pragma omp parallel
      {
        std::vector<float> r(d);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; ++i) {
          const float* xi = xt + i * d;
          if (pq_->by_residual) {
            for (int j = 0; j < d; ++j) r[j] = xi[j] - c[lists[i] * d + j];
            xi = r.data();
          }
          encoder_->encode(xi, &codes[i * cs]);
        }
      }
      for (int64_t i = 0; i < n; ++i) ivf_->invlists->add_entry(lists[i], ivf_->ntotal + i, &codes[i * cs]);
      ivf_->ntotal += n;
    } else {
      ivf_->add_core(n, xt, nullptr, lists.data());
    }
    index_->ntotal = ivf_->ntotal;  // an IndexPreTransform on top
  }

 private:
  faiss::Index* index_;
  faiss::IndexIVF* ivf_;
  faiss::IndexIVFPQ* pq_ = nullptr;
  std::unique_ptr<CoarseAssigner> assigner_;
  std::unique_ptr<PqEncoder> encoder_;
};

// nlist coarse centroids for x[n × d]. Up to kTwoLevelAbove lists: one spherical k-means.
// Above: k1 = √nlist top-level clusters, each split into a number of centroids proportional to
// its size (largest remainder, at most one per point) — the cost drops from n·nlist to about
// n·2√nlist distance computations per iteration.
std::vector<float> train_coarse(int d, int64_t n, const float* x, int64_t nlist, uint64_t seed, const Progress& progress) {
  if (nlist <= kTwoLevelAbove) {
    progress("train", 0, 1);
    auto c = spherical_kmeans(d, n, x, nlist, seed, 20);
    progress("train", 1, 1);
    return c;
  }
  const int64_t k1 = std::max<int64_t>(2, std::llround(std::sqrt(double(nlist))));
  progress("train", 0, k1 + 1);
  const auto top = spherical_kmeans(d, n, x, k1, seed, 20);
  std::vector<idx_t> assign(n);
  {
    faiss::IndexFlatIP q(d);
    q.add(k1, top.data());
    std::vector<float> dis(n);
    faiss_call("k-means assignment", [&] { q.search(n, x, 1, dis.data(), assign.data()); });
  }
  std::vector<int64_t> count(k1, 0);
  for (int64_t i = 0; i < n; ++i) ++count[assign[i]];

  // Proportional allocation with the largest remainders, capped by the cluster's size.
  std::vector<int64_t> alloc(k1, 0);
  std::vector<std::pair<double, int64_t>> rest;
  int64_t given = 0;
  for (int64_t c = 0; c < k1; ++c) {
    const double exact = double(nlist) * double(count[c]) / double(n);
    alloc[c] = std::min<int64_t>(count[c], static_cast<int64_t>(exact));
    given += alloc[c];
    rest.push_back({exact - std::floor(exact), c});
  }
  std::stable_sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  while (given < nlist) {  // n ≥ nlist, so there is room somewhere
    for (const auto& [frac, c] : rest) {
      if (given < nlist && alloc[c] < count[c]) {
        ++alloc[c];
        ++given;
      }
    }
  }

  std::vector<float> centroids;
  centroids.reserve(static_cast<size_t>(nlist) * d);
  std::vector<float> members;
  progress("train", 1, k1 + 1);
  for (int64_t c = 0; c < k1; ++c) {
    if (alloc[c] > 0) {
      members.clear();
      members.reserve(static_cast<size_t>(count[c]) * d);
      for (int64_t i = 0; i < n; ++i) {
        if (assign[i] == c) members.insert(members.end(), x + i * d, x + (i + 1) * d);
      }
      const auto sub = spherical_kmeans(d, count[c], members.data(), alloc[c], seed + 1 + uint64_t(c), 10);
      centroids.insert(centroids.end(), sub.begin(), sub.end());
    }
    progress("train", c + 2, k1 + 1);
  }
  return centroids;
}

// Vectors sampled for training when IndexBuildOptions::train_size is 0.
int64_t default_train_size(faiss::Index* index) {
  if (auto* ivf = find_ivf(index)) {
    return std::clamp<int64_t>(32 * int64_t(ivf->nlist), 65536, int64_t(1) << 20);
  }
  return int64_t(1) << 17;  // PQ / SQ / OPQ codebooks (PQ uses 256 points per centroid)
}

// Trains `index` on a seeded sample of `vectors`.
void train_index(faiss::Index* index, const EmbeddingSet& vectors, const IndexBuildOptions& o, const Progress& progress) {
  const int64_t n = vectors.size();
  const int d = vectors.dim();
  const int64_t want = std::min(n, o.train_size > 0 ? o.train_size : default_train_size(index));
  if (auto* ivf = find_ivf(index)) {
    KVRAG_CHECK(want >= int64_t(ivf->nlist),
                "{} training vectors for {} IVF lists: use fewer lists (a smaller IVF in --factory) or more "
                "vectors (--train-size)",
                want, ivf->nlist);
  }
  const auto ids = sample_ids(n, want, o.seed);
  std::vector<float> x(static_cast<size_t>(want) * d);
  constexpr int64_t kChunk = 16384;
  for (int64_t i = 0; i < want; i += kChunk) {
    const int64_t m = std::min(kChunk, want - i);
    vectors.get(ids.data() + i, m, x.data() + i * d);
    progress("sample", i + m, want);
  }

  // Pre-transforms (OPQ, PCA) are trained first; what follows sees transformed vectors.
  faiss::Index* inner = index;
  const float* xt = x.data();
  std::vector<float> transformed;
  auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index);
  if (pt != nullptr) {
    for (faiss::VectorTransform* vt : pt->chain) {
      if (!vt->is_trained) faiss_call("training the vector transform", [&] { vt->train(want, xt); });
      std::unique_ptr<float[]> y(faiss_call("applying the vector transform", [&] { return vt->apply(want, xt); }));
      transformed.assign(y.get(), y.get() + static_cast<size_t>(want) * vt->d_out);
      xt = transformed.data();
    }
    inner = pt->index;
  }

  // IVF with a flat or HNSW coarse quantizer: our (two-level) spherical k-means, then the
  // quantizer gets the centroids once (for HNSW, one graph build instead of one per iteration).
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(inner);
  if (ivf != nullptr && !(ivf->quantizer->is_trained && size_t(ivf->quantizer->ntotal) == ivf->nlist) &&
      (dynamic_cast<faiss::IndexFlat*>(ivf->quantizer) || dynamic_cast<faiss::IndexHNSWFlat*>(ivf->quantizer))) {
    const auto centroids = train_coarse(inner->d, want, xt, int64_t(ivf->nlist), o.seed, progress);
    faiss_call("adding centroids to the coarse quantizer", [&] {
      ivf->quantizer->reset();
      ivf->quantizer->add(ivf->nlist, centroids.data());
      ivf->quantizer->is_trained = true;
    });
  }
  // An explicit sample size is the caller's choice: no Faiss warnings about it on stderr.
  if (o.train_size > 0) {
    if (auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(inner)) ivfpq->pq.cp.min_points_per_centroid = 1;
    if (auto* pq = dynamic_cast<faiss::IndexPQ*>(inner)) pq->pq.cp.min_points_per_centroid = 1;
  }

  // IVF-PQ (residuals, 8-bit codes, no polysemous reordering): the codebooks are trained on the
  // residuals of a random part of the sample, with the kernel assigner in Faiss's k-means.
  auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(inner);
  if (ivfpq != nullptr && !ivfpq->is_trained && ivfpq->quantizer->is_trained &&
      size_t(ivfpq->quantizer->ntotal) == ivfpq->nlist && ivfpq->quantizer->metric_type == faiss::METRIC_INNER_PRODUCT &&
      ivfpq->by_residual && !ivfpq->do_polysemous_training && PqEncoder::supports(ivfpq->pq)) {
    faiss::ProductQuantizer& pq = ivfpq->pq;
    const int64_t n_pq = std::min<int64_t>(want, int64_t(pq.cp.max_points_per_centroid) * int64_t(pq.ksub));
    const auto rows = sample_ids(want, n_pq, o.seed + 1);  // spread over the (id-sorted) sample
    std::vector<float> c(ivfpq->nlist * size_t(inner->d));
    faiss_call("reading the coarse centroids", [&] { ivfpq->quantizer->reconstruct_n(0, ivfpq->nlist, c.data()); });
    const CoarseAssigner assigner(std::move(c), ivfpq->nlist, inner->d, o.seed);
    std::vector<float> res(size_t(n_pq) * inner->d);
    for (int64_t i = 0; i < n_pq; ++i) {
      std::memcpy(&res[i * inner->d], xt + rows[i] * inner->d, sizeof(float) * inner->d);
    }
    std::vector<idx_t> lists(n_pq);
    assigner.assign(n_pq, res.data(), lists.data());
    const float* cent = assigner.centroids().data();
    for (int64_t i = 0; i < n_pq; ++i) {
      for (int j = 0; j < inner->d; ++j) res[i * inner->d + j] -= cent[lists[i] * inner->d + j];
    }
    progress("train", 0, 1);
    KernelL2Assigner assign_index(static_cast<int>(pq.dsub));
    pq.assign_index = &assign_index;
    try {
      faiss_call("training the product quantizer", [&] { pq.train(n_pq, res.data()); });
    } catch (...) {
      pq.assign_index = nullptr;
      throw;
    }
    pq.assign_index = nullptr;
    faiss_call("training the product quantizer", [&] { ivfpq->precompute_table(); });
    ivfpq->is_trained = true;
    progress("train", 1, 1);
  }
  // Whatever is left (PQ / SQ codebooks of other index types, or the whole index); Faiss skips
  // what is trained.
  if (!inner->is_trained) faiss_call("training the index", [&] { inner->train(want, xt); });
  if (pt != nullptr) pt->is_trained = inner->is_trained;
}

// Search defaults by index type (see the "auto" rule in dense_index.h).
SearchParams type_defaults(faiss::Index* index, bool exact) {
  SearchParams p;
  p.rerank = exact ? 0 : kDefaultRerankDepth;
  if (auto* ivf = find_ivf(index)) {
    p.nprobe = static_cast<int>(std::clamp<size_t>(ivf->nlist / 64, 8, 64));
    p.nprobe = std::min<int>(p.nprobe, static_cast<int>(ivf->nlist));
    if (find_hnsw(index) != nullptr) p.ef_search = std::max(64, 2 * p.nprobe);
  } else if (find_hnsw(index) != nullptr) {
    p.ef_search = 128;
  }
  return p;
}

// `over`'s set fields (non-zero; rerank ≥ 0) replace `base`'s.
SearchParams overlay(SearchParams base, const SearchParams& over) {
  if (over.nprobe > 0) base.nprobe = over.nprobe;
  if (over.ef_search > 0) base.ef_search = over.ef_search;
  if (over.rerank >= 0) base.rerank = over.rerank;
  return base;
}

void check_params(const SearchParams& p, const char* what) {
  KVRAG_CHECK(p.nprobe >= 0, "{}: nprobe must be ≥ 0 (0 = default), got {}", what, p.nprobe);
  KVRAG_CHECK(p.ef_search >= 0, "{}: ef_search must be ≥ 0 (0 = default), got {}", what, p.ef_search);
  KVRAG_CHECK(p.rerank >= -1, "{}: rerank must be ≥ 0, or -1 for the default, got {}", what, p.rerank);
}

bool index_is_exact(const faiss::Index* index) {
  if (dynamic_cast<const faiss::IndexFlat*>(index) != nullptr) return true;
  if (dynamic_cast<const faiss::IndexIVFFlat*>(index) != nullptr) return true;
  if (auto* h = dynamic_cast<const faiss::IndexHNSW*>(index)) {
    return dynamic_cast<const faiss::IndexFlat*>(h->storage) != nullptr;
  }
  return false;
}

// The serialised trained state of an index without its vectors: equal for indexes trained
// identically (cloned from one train_from folder), different otherwise.
std::vector<uint8_t> trained_state(faiss::Index* index) {
  faiss::VectorIOWriter w;
  if (faiss::IndexIVF* ivf = find_ivf(index)) {
    faiss::ArrayInvertedLists empty(ivf->nlist, ivf->code_size);
    faiss::InvertedLists* saved = ivf->invlists;
    const idx_t saved_ivf = ivf->ntotal, saved_top = index->ntotal;
    ivf->invlists = &empty;
    ivf->ntotal = 0;
    index->ntotal = 0;
    auto restore = [&] {
      ivf->invlists = saved;
      ivf->ntotal = saved_ivf;
      index->ntotal = saved_top;
    };
    try {
      faiss::write_index(index, &w);
    } catch (...) {
      restore();
      throw;
    }
    restore();
  } else {
    const std::string s = fmt::format("{} d={} metric={}", type_name(*index), index->d, int(index->metric_type));
    w.data.assign(s.begin(), s.end());
  }
  return w.data;
}

}  // namespace

// ---- searching -------------------------------------------------------------------------------------
//
// Faiss's search code is used where it is efficient (IVF-PQ list scanning by lookup tables, BLAS
// for batches against a flat index). What would run Faiss's scalar distance loops — the coarse
// quantizer of an IVF index, HNSW graph walks, IVF-Flat list scans, exact search of a flat
// index (whose BLAS path is slow with this machine's OpenBLAS) — runs here on the same data
// structures with the SIMD dot product.

namespace {

// Inner products against float vectors in an HNSW graph's flat storage, for faiss::HNSW::search
// (which minimises: the similarity is negated, as Faiss's IndexHNSW does).
struct NegIPDistance : faiss::DistanceComputer {
  NegIPDistance(const float* base, int d) : base(base), d(d) {}
  void set_query(const float* x) override { q = x; }
  float operator()(idx_t i) override { return -dot(q, base + i * d, d); }
  float symmetric_dis(idx_t i, idx_t j) override { return -dot(base + i * d, base + j * d, d); }
  const float* base;
  int d;
  const float* q = nullptr;
};

// The float vectors of an inner-product HNSW graph with flat storage, or null.
const float* hnsw_flat_ip_base(const faiss::IndexHNSW* h) {
  if (h == nullptr || h->metric_type != faiss::METRIC_INNER_PRODUCT) return nullptr;
  const auto* flat = dynamic_cast<const faiss::IndexFlat*>(h->storage);
  return flat != nullptr ? flat->get_xb() : nullptr;
}

// Top-k of each query in an inner-product HNSW graph with flat storage: D descending, I (-1
// where fewer than k were found).
void hnsw_search(const faiss::IndexHNSW* h, const float* base, int64_t n, const float* x, int64_t k, int ef, float* D,
                 idx_t* I) {
  faiss::SearchParametersHNSW params;
  params.efSearch = std::max<int>(ef, static_cast<int>(k));
  const int d = h->d;
#pragma omp parallel if (n > 1)
  {
    NegIPDistance dc(base, d);
    faiss::VisitedTable vt(h->ntotal);
#pragma omp for schedule(dynamic)
    for (int64_t i = 0; i < n; ++i) {
      float* Di = D + i * k;
      idx_t* Ii = I + i * k;
      dc.set_query(x + i * d);
      faiss::maxheap_heapify(k, Di, Ii);
      h->hnsw.search(dc, static_cast<int>(k), Ii, Di, vt, &params);
      faiss::maxheap_reorder(k, Di, Ii);
      for (int64_t j = 0; j < k; ++j) Di[j] = -Di[j];
    }
  }
}

// Merges count vectors base[count × d] (ids: ids[j], or first_id + j) into the top-k min-heap
// (hv, hi) of query q.
void scan_vectors(const float* q, const float* base, const idx_t* ids, idx_t first_id, int64_t count, int d, int64_t k,
                  float* hv, idx_t* hi) {
  for (int64_t j = 0; j < count; ++j) {
    const float s = dot(q, base + j * d, d);
    if (s > hv[0]) faiss::minheap_replace_top(k, hv, hi, s, ids != nullptr ? ids[j] : first_id + j);
  }
}

// Merges per-thread top-k lists of one query (vals[t][0..k), ids[t][0..k), any order, id -1 for
// none) into D, I (descending).
void merge_topk(const std::vector<std::vector<float>>& vals, const std::vector<std::vector<idx_t>>& ids, size_t offset,
                int64_t k, float* D, idx_t* I) {
  faiss::minheap_heapify(k, D, I);
  for (size_t t = 0; t < vals.size(); ++t) {
    for (int64_t j = 0; j < k; ++j) {
      const idx_t id = ids[t][offset + j];
      const float v = vals[t][offset + j];
      if (id >= 0 && v > D[0]) faiss::minheap_replace_top(k, D, I, v, id);
    }
  }
  faiss::minheap_reorder(k, D, I);
}

// Top-k of n queries among the nb vectors base[nb × d] (ids = positions): D descending, I.
// Blocks of base vectors stay in cache while every query scans them; the threads split the
// blocks, each with its own heaps, merged at the end — one pass over memory for a whole batch
// (Faiss's BLAS path is several times slower with this machine's OpenBLAS).
void flat_search(const float* base, int64_t nb, int d, int64_t n, const float* x, int64_t k, float* D, idx_t* I) {
  constexpr int64_t kBlock = 512;
  const int nt = std::max(1, omp_get_max_threads());
  std::vector<std::vector<float>> tv(nt);
  std::vector<std::vector<idx_t>> ti(nt);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    auto& hv = tv[t];
    auto& hi = ti[t];
    hv.resize(size_t(n) * k);
    hi.resize(size_t(n) * k);
    for (int64_t i = 0; i < n; ++i) faiss::minheap_heapify(k, &hv[i * k], &hi[i * k]);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nb; b += kBlock) {
      const int64_t m = std::min(kBlock, nb - b);
      for (int64_t i = 0; i < n; ++i) scan_vectors(x + i * d, base + b * d, nullptr, b, m, d, k, &hv[i * k], &hi[i * k]);
    }
  }
  for (int64_t i = 0; i < n; ++i) merge_topk(tv, ti, size_t(i) * k, k, D + i * k, I + i * k);
}

// The nprobe nearest coarse centroids of each query (keys -1 where fewer exist).
void coarse_search(const faiss::IndexIVF* ivf, int64_t n, const float* x, int nprobe, int ef, float* D, idx_t* I) {
  const faiss::Index* q = ivf->quantizer;
  const auto* h = dynamic_cast<const faiss::IndexHNSW*>(q);
  if (const float* base = hnsw_flat_ip_base(h)) {
    hnsw_search(h, base, n, x, nprobe, ef, D, I);
    return;
  }
  const auto* flat = dynamic_cast<const faiss::IndexFlat*>(q);
  if (flat != nullptr && flat->metric_type == faiss::METRIC_INNER_PRODUCT && n < 20) {  // Faiss uses BLAS from 20
    for (int64_t i = 0; i < n; ++i) {
      faiss::minheap_heapify(nprobe, D + i * nprobe, I + i * nprobe);
      scan_vectors(x + i * q->d, flat->get_xb(), nullptr, 0, q->ntotal, q->d, nprobe, D + i * nprobe, I + i * nprobe);
      faiss::minheap_reorder(nprobe, D + i * nprobe, I + i * nprobe);
    }
    return;
  }
  faiss_call("coarse search", [&] { q->search(n, x, nprobe, D, I); });
}

// Search without Faiss's scalar loops, for the index types above; false for other types.
bool search_direct(faiss::Index* index, int64_t n, const float* queries, int64_t k, const SearchParams& p, float* D,
                   idx_t* I) {
  auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index);
  faiss::Index* inner = pt != nullptr ? pt->index : index;
  if (inner->metric_type != faiss::METRIC_INNER_PRODUCT) return false;
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(inner);
  auto* flat = dynamic_cast<faiss::IndexFlat*>(inner);
  auto* h = dynamic_cast<faiss::IndexHNSW*>(inner);
  const float* hbase = hnsw_flat_ip_base(h);
  if (ivf == nullptr && flat == nullptr && hbase == nullptr) return false;

  std::unique_ptr<const float[]> owned;  // the queries through the pre-transforms
  const float* x = queries;
  if (pt != nullptr) {
    x = faiss_call("transforming the queries", [&] { return pt->apply_chain(n, queries); });
    if (x != queries) owned.reset(x);
  }
  const int d = inner->d;
  if (hbase != nullptr) {
    hnsw_search(h, hbase, n, x, k, p.ef_search > 0 ? p.ef_search : h->hnsw.efSearch, D, I);
    return true;
  }
  if (flat != nullptr) {
    flat_search(flat->get_xb(), flat->ntotal, d, n, x, k, D, I);
    return true;
  }

  const int nprobe = static_cast<int>(std::clamp<size_t>(size_t(p.nprobe > 0 ? p.nprobe : ivf->nprobe), 1, ivf->nlist));
  const auto* qh = dynamic_cast<const faiss::IndexHNSW*>(ivf->quantizer);
  const int ef = p.ef_search > 0 ? p.ef_search : (qh != nullptr ? qh->hnsw.efSearch : 0);
  std::vector<float> cdis(size_t(n) * nprobe);
  std::vector<idx_t> keys(size_t(n) * nprobe);
  coarse_search(ivf, n, x, nprobe, ef, cdis.data(), keys.data());

  // Fewer queries than threads (a single query): each query's lists are dealt out to the
  // threads (every nt-th, which balances near and far lists), and their top-k lists merged.
  const int max_threads = std::max(1, omp_get_max_threads());
  const bool split_lists = n < max_threads && nprobe > 1;
  const int nt = split_lists ? std::min(max_threads, nprobe) : static_cast<int>(std::min<int64_t>(max_threads, n));

  if (dynamic_cast<faiss::IndexIVFFlat*>(ivf) != nullptr) {
    // IVF-Flat: the lists hold the float vectors. One task = (query, every nt-th list from t).
    auto scan = [&](int64_t i, int first, int stride, float* hv, idx_t* hi) {
      faiss::minheap_heapify(k, hv, hi);
      for (int j = first; j < nprobe; j += stride) {
        const idx_t list = keys[i * nprobe + j];
        if (list < 0) continue;
        const size_t size = ivf->invlists->list_size(list);
        if (size == 0) continue;
        faiss::InvertedLists::ScopedCodes codes(ivf->invlists, list);
        faiss::InvertedLists::ScopedIds ids(ivf->invlists, list);
        scan_vectors(x + i * d, reinterpret_cast<const float*>(codes.get()), ids.get(), 0, int64_t(size), d, k, hv, hi);
      }
    };
    if (!split_lists) {
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic)
      for (int64_t i = 0; i < n; ++i) {
        scan(i, 0, 1, D + i * k, I + i * k);
        faiss::minheap_reorder(k, D + i * k, I + i * k);
      }
      return true;
    }
    std::vector<std::vector<float>> tv(nt, std::vector<float>(k));
    std::vector<std::vector<idx_t>> ti(nt, std::vector<idx_t>(k));
    for (int64_t i = 0; i < n; ++i) {
#pragma omp parallel for num_threads(nt)
      for (int t = 0; t < nt; ++t) scan(i, t, nt, tv[t].data(), ti[t].data());
      merge_topk(tv, ti, 0, k, D + i * k, I + i * k);
    }
    return true;
  }

  // Other IVF types (PQ, SQ, …): Faiss scans the lists it is given. search_preassigned runs
  // its queries one after the other (Faiss's search() splits them across threads first), so
  // they are split here the same way — or, for a single query, its lists.
  std::exception_ptr error;
  auto run = [&](int64_t i0, int64_t i1, const idx_t* kk, const float* cd, int np, float* Dt, idx_t* It) {
    faiss::SearchParametersIVF params;
    params.nprobe = np;
    try {
      faiss_call("search", [&] { ivf->search_preassigned(i1 - i0, x + i0 * d, k, kk, cd, Dt, It, false, &params); });
    } catch (...) {
#pragma omp critical(kvrag_search_error)
      if (!error) error = std::current_exception();
    }
  };
  if (!split_lists) {
#pragma omp parallel for num_threads(nt) if (nt > 1)
    for (int t = 0; t < nt; ++t) {
      const int64_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
      run(i0, i1, keys.data() + i0 * nprobe, cdis.data() + i0 * nprobe, nprobe, D + i0 * k, I + i0 * k);
    }
  } else {
    const int per = (nprobe + nt - 1) / nt;
    std::vector<std::vector<float>> tv(nt, std::vector<float>(k));
    std::vector<std::vector<idx_t>> ti(nt, std::vector<idx_t>(k));
    std::vector<std::vector<idx_t>> tk(nt, std::vector<idx_t>(per));
    std::vector<std::vector<float>> tc(nt, std::vector<float>(per));
    for (int64_t i = 0; i < n && !error; ++i) {
#pragma omp parallel for num_threads(nt)
      for (int t = 0; t < nt; ++t) {
        int np = 0;
        for (int j = t; j < nprobe; j += nt, ++np) {
          tk[t][np] = keys[i * nprobe + j];
          tc[t][np] = cdis[i * nprobe + j];
        }
        for (int j = np; j < per; ++j) tk[t][j] = -1;  // unused slots
        run(i, i + 1, tk[t].data(), tc[t].data(), per, tv[t].data(), ti[t].data());
      }
      merge_topk(tv, ti, 0, k, D + i * k, I + i * k);
    }
  }
  if (error) std::rethrow_exception(error);
  return true;
}

}  // namespace

// ---- choose_factory ---------------------------------------------------------------------------------

std::string choose_factory(int64_t n, int dim, int64_t max_ram_bytes) {
  KVRAG_CHECK(n >= 1 && dim >= 1, "choose_factory: need n ≥ 1 and dim ≥ 1 (got {}, {})", n, dim);
  const double budget = double(max_ram_bytes);
  const double flat_bytes = double(n) * dim * 4;
  if (n < kFlatMaxVectors && flat_bytes <= budget) return "Flat";

  // Lists: the power of two nearest 4·√n, in [16, 65536], with ≥ 39 points per list.
  int64_t nlist = int64_t(1) << std::lround(std::log2(4.0 * std::sqrt(double(n))));
  nlist = std::clamp<int64_t>(nlist, 16, 65536);
  while (nlist > 16 && nlist * 39 > n) nlist /= 2;
  const double centroid_bytes = double(nlist) * dim * 4 * 1.1;  // + HNSW links

  if (flat_bytes + 8.0 * n + centroid_bytes <= budget) {
    return nlist >= 8192 ? fmt::format("IVF{}_HNSW32,Flat", nlist) : fmt::format("IVF{},Flat", nlist);
  }
  // PQ: the largest code (dim/8, dim/12, dim/16, …, one byte per sub-vector) that fits 75% of
  // the budget with the ids and centroids. Longer codes (dim/4) cost scan time and buy little
  // once the candidates are re-ranked.
  int m = 0;
  for (int dsub : {8, 12, 16, 24, 32, 48, 64, 96, 128}) {
    if (dim % dsub != 0) continue;
    const int cand = dim / dsub;
    if (double(n) * (cand + 8) + centroid_bytes <= 0.75 * budget) {
      m = cand;
      break;
    }
    m = cand;  // smallest so far: the fallback if nothing fits
  }
  if (m == 0) m = 1;  // dim has no divisor in the list: one sub-quantizer (poor, but valid)
  return fmt::format("IVF{}_HNSW32,PQ{}np", nlist, m);
}

// ---- DenseIndex --------------------------------------------------------------------------------------

DenseIndex::DenseIndex() = default;
DenseIndex::~DenseIndex() = default;

int DenseIndex::dim() const { return index_->d; }
int64_t DenseIndex::size() const { return index_->ntotal; }
bool DenseIndex::exact_scores() const { return index_is_exact(index_.get()); }

std::unique_ptr<DenseIndex> DenseIndex::build(const EmbeddingSet& vectors, const IndexBuildOptions& o) {
  KVRAG_CHECK(o.add_batch >= 1, "index build: add_batch must be ≥ 1, got {}", o.add_batch);
  KVRAG_CHECK(o.train_size >= 0, "index build: train_size must be ≥ 0, got {}", o.train_size);
  check_params(o.defaults, "index build");
  const Progress progress = [&](const std::string& stage, int64_t done, int64_t total) {
    if (o.progress) o.progress(stage, done, total);
  };
  const int64_t n = vectors.size();
  const int d = vectors.dim();

  std::unique_ptr<DenseIndex> out(new DenseIndex());
  out->fingerprint_ = vectors.fingerprint();
  SearchParams stored;  // defaults recorded with a train_from index
  if (!o.train_from.empty()) {
    const json meta = read_meta(o.train_from);
    out->index_ = read_index_file(o.train_from, meta);
    KVRAG_CHECK(out->index_->d == d, "--train-from {}: dimension {} differs from the vectors' {}", o.train_from,
                out->index_->d, d);
    KVRAG_CHECK(meta["fingerprint"] == out->fingerprint_,
                "--train-from {}: built from encoder fingerprint {}, but {} holds vectors of {}", o.train_from,
                meta["fingerprint"].get<std::string>(), vectors.dir(), out->fingerprint_);
    KVRAG_CHECK(out->index_->is_trained, "--train-from {}: the index is not trained", o.train_from);
    faiss_call("emptying the --train-from index", [&] { out->index_->reset(); });
    out->factory_ = meta["factory"].get<std::string>();
    stored = meta_defaults(meta);
  } else {
    out->factory_ = o.factory == "auto" ? choose_factory(n, d, o.max_ram_bytes) : o.factory;
    KVRAG_CHECK(!out->factory_.empty(), "index build: empty factory string");
    out->index_.reset(faiss_call(fmt::format("invalid Faiss factory string '{}'", out->factory_), [&] {
      return faiss::index_factory(d, out->factory_.c_str(), faiss::METRIC_INNER_PRODUCT);
    }));
    if (!out->index_->is_trained) train_index(out->index_.get(), vectors, o, progress);
  }
  out->defaults_ = overlay(overlay(type_defaults(out->index_.get(), out->exact_scores()), stored), o.defaults);

  if (!o.train_only) {
    Adder adder(out->index_.get(), o.seed);
    std::vector<float> batch(static_cast<size_t>(std::min(o.add_batch, n)) * d);
    progress("add", 0, n);
    for (int64_t begin = 0; begin < n; begin += o.add_batch) {
      const int64_t m = std::min(o.add_batch, n - begin);
      vectors.get_range(begin, m, batch.data());
      vectors.prefetch(begin + m, o.add_batch);  // read the next batch while this one is added
      faiss_call(fmt::format("adding vectors [{}, {})", begin, begin + m), [&] { adder.add(m, batch.data()); });
      progress("add", begin + m, n);
    }
  }
  out->vectors_ = &vectors;
  return out;
}

std::unique_ptr<DenseIndex> DenseIndex::load(const std::string& dir, const EmbeddingSet* vectors) {
  const json meta = read_meta(dir);
  std::unique_ptr<DenseIndex> out(new DenseIndex());
  out->index_ = read_index_file(dir, meta);
  out->factory_ = meta["factory"].get<std::string>();
  out->fingerprint_ = meta["fingerprint"].get<std::string>();
  out->defaults_ = overlay(type_defaults(out->index_.get(), out->exact_scores()), meta_defaults(meta));
  check_params(out->defaults_, (dir + "/dense.json").c_str());
  if (vectors != nullptr) {
    KVRAG_CHECK(vectors->fingerprint() == out->fingerprint_,
                "{}: index built from encoder fingerprint {}, but {} holds vectors of fingerprint {}: rebuild the index",
                dir, out->fingerprint_, vectors->dir(), vectors->fingerprint());
    KVRAG_CHECK(vectors->dim() == out->dim(), "{}: index dimension {} differs from the embeddings' {} in {}", dir,
                out->dim(), vectors->dim(), vectors->dir());
    KVRAG_CHECK(vectors->size() == out->size(), "{}: index holds {} vectors, but {} holds {}: rebuild the index",
                dir, out->size(), vectors->dir(), vectors->size());
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
  faiss_call(path + ": cannot write the Faiss index", [&] { faiss::write_index(index_.get(), &writer); });
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
               {"faiss_version", fmt::format("{}.{}.{}", FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR, FAISS_VERSION_PATCH)},
               {"faiss_bytes", writer.checksum().bytes()},
               {"faiss_checksum", writer.checksum().hex()}};
  write_file_atomic(dir + "/dense.json", meta.dump(2) + "\n");
}

SearchParams DenseIndex::resolve(const SearchParams& params) const {
  check_params(params, "search");
  SearchParams p = overlay(defaults_, params);
  if (p.rerank < 0) p.rerank = 0;
  return p;
}

SearchResult DenseIndex::search(int64_t n, int query_dim, const float* queries, int k, const SearchParams& params) const {
  KVRAG_CHECK(query_dim == dim(), "query dimension {} does not match the index dimension {}", query_dim, dim());
  return search(n, queries, k, params);
}

SearchResult DenseIndex::search(int64_t n, const float* queries, int k, const SearchParams& params) const {
  KVRAG_CHECK(k >= 1, "k must be at least 1, got {}", k);
  KVRAG_CHECK(k <= size(), "k = {} exceeds the {} vectors in the index", k, size());
  KVRAG_CHECK(n >= 0, "negative number of queries ({})", n);
  const int d = dim();
  SearchResult result;
  result.scores.assign(static_cast<size_t>(n) * k, -std::numeric_limits<float>::infinity());
  result.ids.assign(static_cast<size_t>(n) * k, -1);
  if (n == 0) return result;
  KVRAG_CHECK(queries != nullptr, "search: no query vectors");
  for (int64_t i = 0; i < n * d; ++i) {
    KVRAG_CHECK(std::isfinite(queries[i]), "query {} has a non-finite component ({})", i / d, queries[i]);
  }

  const SearchParams p = resolve(params);
  bool rerank = p.rerank > 0 && !exact_scores();
  if (rerank && vectors_ == nullptr) {
    // An explicit request cannot be honoured; the index's default silently degrades.
    KVRAG_CHECK(params.rerank <= 0, "re-ranking needs the embeddings: load the index with its EmbeddingSet");
    rerank = false;
  }
  const int64_t depth = rerank ? std::min<int64_t>(size(), std::max<int64_t>(k, p.rerank)) : k;

  std::vector<float> dis(static_cast<size_t>(n) * depth);
  std::vector<idx_t> ids(static_cast<size_t>(n) * depth);

  faiss::Index* index = index_.get();
  if (!search_direct(index, n, queries, depth, p, dis.data(), ids.data())) {
    // Other types: Faiss's search. Faiss 1.7.3's IndexHNSW ignores SearchParametersHNSW, so a
    // graph whose storage is not flat gets efSearch set on the index, under the lock.
    auto run = [&] { faiss_call("search", [&] { index->search(n, queries, depth, dis.data(), ids.data()); }); };
    faiss::IndexHNSW* hnsw = find_hnsw(index);
    if (hnsw != nullptr && p.ef_search > 0 && hnsw->hnsw.efSearch != p.ef_search) {
      std::unique_lock lock(hnsw_mutex_);
      hnsw->hnsw.efSearch = p.ef_search;
      run();
    } else {
      std::shared_lock lock(hnsw_mutex_);
      run();
    }
  }

  if (!rerank) {
    for (int64_t q = 0; q < n; ++q) {
      for (int j = 0; j < k; ++j) {
        const idx_t id = ids[q * depth + j];
        if (id < 0) continue;
        result.ids[q * k + j] = id;
        result.scores[q * k + j] = dis[q * depth + j];
      }
    }
    return result;
  }

  // Re-rank: exact inner products with the float16 vectors of each query's candidates. The
  // rows are prefetched first, so that those not in the page cache are read in parallel.
  vectors_->prefetch(ids.data(), static_cast<int64_t>(ids.size()));
  std::exception_ptr error;
#pragma omp parallel if (n > 1)
  {
    std::vector<int64_t> cand;
    std::vector<float> rows;
    std::vector<std::pair<float, int64_t>> scored;
#pragma omp for schedule(dynamic)
    for (int64_t q = 0; q < n; ++q) {
      try {
        cand.clear();
        for (int64_t j = 0; j < depth; ++j) {
          if (ids[q * depth + j] >= 0) cand.push_back(ids[q * depth + j]);
        }
        rows.resize(cand.size() * d);
        vectors_->get(cand.data(), static_cast<int64_t>(cand.size()), rows.data());
        scored.clear();
        for (size_t j = 0; j < cand.size(); ++j) {
          scored.push_back({dot(queries + q * d, rows.data() + j * d, d), cand[j]});
        }
        const size_t top = std::min<size_t>(k, scored.size());
        std::partial_sort(scored.begin(), scored.begin() + top, scored.end(), [](const auto& a, const auto& b) {
          return a.first != b.first ? a.first > b.first : a.second < b.second;
        });
        for (size_t j = 0; j < top; ++j) {
          result.scores[q * k + j] = scored[j].first;
          result.ids[q * k + j] = scored[j].second;
        }
      } catch (...) {
#pragma omp critical(kvrag_rerank_error)
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
  return result;
}

json DenseIndex::info() const {
  json j = {{"factory", factory_},
            {"faiss_type", type_name(*index_)},
            {"dim", dim()},
            {"size", size()},
            {"metric", "ip"},
            {"fingerprint", fingerprint_},
            {"exact_scores", exact_scores()},
            {"nprobe", defaults_.nprobe},
            {"ef_search", defaults_.ef_search},
            {"rerank", defaults_.rerank}};
  double resident = 0;
  if (faiss::IndexIVF* ivf = find_ivf(index_.get())) {
    j["nlist"] = ivf->nlist;
    j["code_size"] = ivf->code_size;
    j["quantizer"] = type_name(*ivf->quantizer);
    if (size() > 0) j["imbalance_factor"] = ivf->invlists->imbalance_factor();
    resident = double(size()) * (ivf->code_size + sizeof(idx_t)) + double(ivf->nlist) * dim() * 4;
  } else if (auto* codes = dynamic_cast<faiss::IndexFlatCodes*>(index_.get())) {
    resident = double(size()) * codes->code_size;
  } else if (auto* h = dynamic_cast<faiss::IndexHNSW*>(index_.get())) {
    resident = double(size()) * (dim() * 4 + h->hnsw.nb_neighbors(0) * 4 * 1.2);
  }
  if (resident > 0) j["resident_bytes_estimate"] = static_cast<int64_t>(resident);
  return j;
}

// ---- merging -------------------------------------------------------------------------------------------

namespace {

// out_dir/embeddings from the shards' embeddings, renamed to the merged row ranges: hard links
// where the file system allows, else copies. Built in a temporary folder, then renamed.
void merge_embeddings(const std::vector<std::string>& shard_dirs, const std::vector<int64_t>& sizes,
                      const std::string& out_dir) {
  const std::string target = out_dir + "/embeddings";
  std::error_code ec;
  if (fs::exists(target, ec)) return;  // the caller's own (e.g. the full corpus): load() checks it
  for (const auto& dir : shard_dirs) {
    if (!fs::is_directory(dir + "/embeddings", ec)) return;  // nothing to assemble
  }
  const std::string tmp = fmt::format("{}.tmp.{}", target, static_cast<long>(::getpid()));
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  KVRAG_CHECK(!ec, "cannot create {}: {}", tmp, ec.message());
  try {
    int64_t offset = 0;
    for (size_t i = 0; i < shard_dirs.size(); ++i) {
      const std::string src = shard_dirs[i] + "/embeddings";
      const auto set = EmbeddingSet::open(src, sizes[i]);  // the files tile the shard's rows
      if (i == 0) fs::copy_file(src + "/encoder.json", tmp + "/encoder.json");
      for (const auto& de : fs::directory_iterator(src)) {
        int64_t b, e;
        const std::string name = de.path().filename().string();
        if (!EmbeddingSet::parse_shard_name(name, &b, &e)) continue;
        const std::string to = tmp + "/" + EmbeddingSet::shard_name(b + offset, e + offset);
        fs::create_hard_link(de.path(), to, ec);
        if (ec) {
          ec.clear();
          fs::copy_file(de.path(), to);
        }
      }
      offset += sizes[i];
    }
    EmbeddingSet::open(tmp, offset);
    fs::rename(tmp, target);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    fail("cannot assemble {}: {}", target, e.what());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace

void merge_indexes(const std::vector<std::string>& shard_dirs, const std::string& out_dir) {
  KVRAG_CHECK(!shard_dirs.empty(), "index merge: no shard folders given");
  std::unique_ptr<DenseIndex> base;
  std::vector<uint8_t> base_state;
  std::vector<int64_t> sizes;
  for (size_t i = 0; i < shard_dirs.size(); ++i) {
    const std::string& dir = shard_dirs[i];
    auto shard = DenseIndex::load(dir, nullptr);
    sizes.push_back(shard->size());
    faiss::Index* index = shard->index_.get();
    const bool ivf = find_ivf(index) != nullptr;
    const bool flat = dynamic_cast<faiss::IndexFlatCodes*>(index) != nullptr;
    KVRAG_CHECK(ivf || flat,
                "{}: a {} index cannot be merged (only IVF and Flat indexes can): build one index from all the "
                "embeddings instead",
                dir, type_name(*index));
    std::vector<uint8_t> state = faiss_call(dir + ": serialising", [&] { return trained_state(index); });
    if (i == 0) {
      base = std::move(shard);
      base_state = std::move(state);
      continue;
    }
    const std::string& first = shard_dirs[0];
    KVRAG_CHECK(shard->factory_ == base->factory_, "{}: factory '{}' differs from '{}' in {}", dir, shard->factory_,
                base->factory_, first);
    KVRAG_CHECK(shard->fingerprint_ == base->fingerprint_,
                "{}: built from encoder fingerprint {}, but {} from {}: shards must share one encoder", dir,
                shard->fingerprint_, first, base->fingerprint_);
    KVRAG_CHECK(state == base_state,
                "{}: not trained identically to {}: build every shard with --train-from the same trained folder", dir,
                first);
    faiss_call(dir + ": merging", [&] {
      faiss::Index* into = base->index_.get();
      if (faiss::IndexIVF* a = find_ivf(into)) {
        a->merge_from(*find_ivf(index), a->ntotal);  // shifts the shard's ids by the rows so far
        into->ntotal = a->ntotal;                    // an IndexPreTransform on top
      } else {
        into->merge_from(*index, 0);  // Flat: ids are positions
      }
    });
  }
  base->save(out_dir);
  merge_embeddings(shard_dirs, sizes, out_dir);
}

}  // namespace kvrag
