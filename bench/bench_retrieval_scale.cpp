// Dense retrieval at scale: build time, memory, index size, recall@10 against exact search and
// latency of kvrag's DenseIndex on synthetic 768-d embeddings (1M, 10M, …).
//
//   bench_retrieval_scale --work DIR --n 1000000 [--dim 768] [--queries 1000] [--max-ram 2G]
//                         [--configs exact,ivf100,auto] [--sweep 32:128,64:256] [--json]
//
// Everything lives in --work: the embeddings (float16 .npy shards, as `kvrag embed` writes
// them), the queries, the exact ground truth and one index folder per configuration; each step
// is skipped when its output exists, so an interrupted run resumes. Builds and searches run in
// child processes (this program re-executed with --mode build|search), so that each peak RSS
// (VmHWM) is its own: the search figure is what a server holding the index needs.
//
// Data. The vectors are shaped like sentence embeddings rather than i.i.d. Gaussian (on which
// every approximate index looks broken): a point is z = μ_c + 0.6·g in a 24-dimensional latent
// space (1,000 cluster centres μ_c ~ N(0, I)), mapped to 768-d by a fixed random linear map plus
// a smooth non-linearity (sin, as faiss/contrib/datasets.py's SyntheticDataset does), plus
// isotropic noise, then L2-normalised and stored as float16. Queries are fresh draws from the
// same process (corpus-like points that are not in the corpus). Everything is seeded by the
// chunk number, so any machine produces the same bytes.
//
// Configurations, side by side:
//   exact   Faiss IndexFlatIP in RAM (n × dim × 4 bytes). Where that does not fit in RAM, the
//           row reports the chunked exact scan (float16 from disk, float32 BLAS per chunk) that
//           computed the ground truth instead.
//   ivf100  the reference: IVF100,Flat searched with nprobe = 100 (float32 vectors in RAM).
//   auto    kvrag's choice under --max-ram (DenseIndex "auto": IVF with an HNSW coarse quantizer
//           and PQ codes, re-ranked with the float16 vectors read from the shards on disk), with
//           its stored defaults, then each --sweep nprobe:rerank pair.
// Latency: single queries one after the other (p50/p99 over all queries) and batches of 64
// (p50/p99 per batch), after one warm-up pass, with all cores (OpenMP).
#include <faiss/utils/Heap.h>
#include <faiss/utils/distances.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "bench_common.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "index/dense_index.h"
#include "index/embedding_set.h"
#include "index/npy_file.h"

namespace {

using json = nlohmann::json;
using namespace kvrag;
namespace fs = std::filesystem;

constexpr int kLatent = 24;
constexpr int kClusters = 1000;
constexpr int64_t kChunk = 65536;  // rows per generated shard (and per seed)
constexpr int kK = 10;             // recall@10

// ---- memory
// ----------------------------------------------------------------------------------------

int64_t mem_total_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  in >> key >> kb;
  return kb * 1024;
}

double gib(double bytes) { return bytes / double(int64_t(1) << 30); }

// The 1-minute load average (other work on the machine inflates latencies).
double load_average() {
  std::ifstream in("/proc/loadavg");
  double l = -1;
  in >> l;
  return l;
}

// ---- synthetic data
// ------------------------------------------------------------------------------

// xoshiro256+ : fast, good enough for noise; one stream per chunk.
struct Rng {
  uint64_t s[4];
  explicit Rng(uint64_t seed) {
    for (auto& v : s) {  // splitmix64
      seed += 0x9e3779b97f4a7c15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      v = z ^ (z >> 31);
    }
  }
  uint64_t next() {
    const uint64_t r = s[0] + s[3], t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return r;
  }
  // Approximately standard normal: a sum of four 16-bit uniforms (Irwin–Hall), rescaled.
  float normal() {
    const uint64_t r = next();
    const float sum =
        float(r & 0xffff) + float((r >> 16) & 0xffff) + float((r >> 32) & 0xffff) + float(r >> 48);
    return (sum / 65536.0f - 2.0f) * 1.7320508f;  // var(U) = 1/12 → 4/12 → × √3
  }
};

// The fixed parts of the generative process (cluster centres, projection), from seed 0.
struct Model {
  int dim;
  std::vector<float> centers;  // [kClusters × kLatent]
  std::vector<float> proj;     // [kLatent × dim]
  std::vector<float> freq;     // [dim]
  explicit Model(int d) : dim(d), centers(kClusters * kLatent), proj(size_t(kLatent) * d), freq(d) {
    std::mt19937_64 rng(20240611);
    std::normal_distribution<float> g;
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (auto& v : centers) v = g(rng);
    for (auto& v : proj) v = g(rng) / std::sqrt(float(kLatent));
    for (auto& v : freq) v = 0.3f + 0.7f * u(rng);
  }

  // Rows of chunk `chunk` (seeded by it) into out[rows × dim], L2-normalised.
  void generate(uint64_t chunk, int64_t rows, float* out) const {
    Rng rng(0x5eed0000ull + chunk);
    std::vector<float> z(kLatent);
    for (int64_t i = 0; i < rows; ++i) {
      const int c = int(rng.next() % kClusters);
      for (int l = 0; l < kLatent; ++l) z[l] = centers[c * kLatent + l] + 0.6f * rng.normal();
      float* x = out + i * dim;
      for (int j = 0; j < dim; ++j) x[j] = 0;
      for (int l = 0; l < kLatent; ++l) {
        const float zl = z[l];
        const float* p = &proj[size_t(l) * dim];
        for (int j = 0; j < dim; ++j) x[j] += zl * p[j];
      }
      double norm = 0;
      for (int j = 0; j < dim; ++j) {
        // a linear part, a smooth non-linear part, isotropic noise
        x[j] = x[j] + std::sin(freq[j] * x[j]) + 0.25f * rng.normal();
        norm += double(x[j]) * x[j];
      }
      const float inv = float(1.0 / std::sqrt(norm));
      for (int j = 0; j < dim; ++j) x[j] *= inv;
    }
  }
};

// Writes WORK/embeddings (float16 shards of kChunk rows) and WORK/queries.npy (float32),
// skipping shards already there. Two threads, each its own chunks.
void generate(const std::string& work, int64_t n, int dim, int64_t nq) {
  const std::string dir = work + "/embeddings";
  fs::create_directories(dir);
  write_file_atomic(
      dir + "/encoder.json",
      json{{"path", "synthetic"}, {"fingerprint", fmt::format("synthetic-{}d", dim)}, {"dim", dim}}
          .dump(2));
  const Model model(dim);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::atomic<int64_t> next{0}, done{0};
  const double t0 = bench::now_seconds();
  auto worker = [&] {
    std::vector<float> x(size_t(kChunk) * dim);
    std::vector<uint16_t> h(x.size());
    for (int64_t c; (c = next.fetch_add(1)) < chunks;) {
      const int64_t b = c * kChunk, e = std::min(n, b + kChunk);
      const std::string path = dir + "/" + EmbeddingSet::shard_name(b, e);
      if (!fs::exists(path)) {
        model.generate(uint64_t(c), e - b, x.data());
        float_to_half(x.data(), h.data(), size_t(e - b) * dim);
        write_npy(path, NpyDtype::kF16, h.data(), e - b, dim);
      }
      const int64_t d = done.fetch_add(1) + 1;
      if (d % 16 == 0 || d == chunks) {
        fmt::print(stderr, "gen: {}/{} chunks ({:.0f} s)\n", d, chunks, bench::now_seconds() - t0);
      }
    }
  };
  std::thread a(worker), b(worker);
  a.join();
  b.join();
  if (!fs::exists(work + "/queries.npy")) {
    std::vector<float> q(size_t(nq) * dim);
    model.generate(uint64_t(1) << 40, nq, q.data());  // a seed no corpus chunk uses
    write_npy(work + "/queries.npy", NpyDtype::kF32, q.data(), nq, dim);
  }
}

std::vector<float> load_queries(const std::string& work, int64_t* nq) {
  const auto m = NpyMatrix::open(work + "/queries.npy");
  std::vector<float> q(size_t(m->rows() * m->cols()));
  m->read_rows(0, m->rows(), q.data());
  *nq = m->rows();
  return q;
}

// ---- exact ground truth
// ----------------------------------------------------------------------------

// Top-k of queries × rows [begin, begin + m) merged into (val, ids) [nq × k] min-heaps.
void scan_chunk(const float* q, int64_t nq, const float* x, int64_t m, int64_t begin, int dim,
                int k, std::vector<float>& val, std::vector<int64_t>& ids) {
  std::vector<float> cv(size_t(nq) * k);
  std::vector<int64_t> ci(size_t(nq) * k);
  faiss::knn_inner_product(q, x, dim, nq, m, k, cv.data(), ci.data());  // BLAS; sorted descending
  for (int64_t i = 0; i < nq; ++i) {
    for (int j = 0; j < k; ++j) {
      if (ci[i * k + j] < 0) continue;
      float* hv = &val[i * k];
      int64_t* hi = &ids[i * k];
      if (cv[i * k + j] > hv[0]) {  // better than the worst kept
        faiss::minheap_replace_top(k, hv, hi, cv[i * k + j], ci[i * k + j] + begin);
      } else {
        break;  // the rest of this sorted list is worse
      }
    }
  }
}

// Exact top-k of `nq` queries by a blocked scan of the float16 shards; returns ids [nq × k],
// best first, and the scan's wall time.
std::vector<int64_t> exact_scan(const EmbeddingSet& set, const float* q, int64_t nq, int k,
                                double* seconds, bool verbose) {
  const int dim = set.dim();
  std::vector<float> val(size_t(nq) * k);
  std::vector<int64_t> ids(size_t(nq) * k);
  for (int64_t i = 0; i < nq; ++i) faiss::minheap_heapify(k, &val[i * k], &ids[i * k]);
  std::vector<float> x(size_t(kChunk) * dim);
  const double t0 = bench::now_seconds();
  for (int64_t b = 0; b < set.size(); b += kChunk) {
    const int64_t m = std::min(kChunk, set.size() - b);
    set.get_range(b, m, x.data());
    set.prefetch(b + m, kChunk);
    scan_chunk(q, nq, x.data(), m, b, dim, k, val, ids);
    if (verbose && (b / kChunk) % 16 == 15) {
      fmt::print(stderr, "exact scan: {} / {} rows ({:.0f} s)\n", b + m, set.size(),
                 bench::now_seconds() - t0);
    }
  }
  for (int64_t i = 0; i < nq; ++i) faiss::minheap_reorder(k, &val[i * k], &ids[i * k]);
  *seconds = bench::now_seconds() - t0;
  return ids;
}

double recall_at_k(const std::vector<int64_t>& got, const std::vector<int64_t>& truth, int64_t nq,
                   int k) {
  double hits = 0;
  for (int64_t i = 0; i < nq; ++i) {
    for (int j = 0; j < k; ++j) {
      const int64_t id = got[i * k + j];
      hits += std::find(truth.begin() + i * k, truth.begin() + (i + 1) * k, id) !=
              truth.begin() + (i + 1) * k;
    }
  }
  return hits / double(nq * k);
}

// ---- configurations
// --------------------------------------------------------------------------------

struct Config {
  std::string name, factory;
  SearchParams params;
  bool in_ram_floats = false;  // needs n × dim × 4 bytes of RAM
};

Config config_named(const std::string& name) {
  Config c;
  c.name = name;
  if (name == "exact") {
    c.factory = "Flat";
    c.in_ram_floats = true;
  } else if (name == "ivf100") {
    c.factory = "IVF100,Flat";
    c.params.nprobe = 100;
    c.in_ram_floats = true;
  } else if (name == "auto") {
    c.factory = "auto";
  } else {
    fail("unknown configuration '{}' (exact, ivf100, auto)", name);
  }
  return c;
}

// (nprobe, rerank) pairs from "32:128,64:256".
std::vector<SearchParams> parse_sweep(const std::string& s) {
  std::vector<SearchParams> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const auto colon = item.find(':');
    KVRAG_CHECK(colon != std::string::npos, "--sweep: expected nprobe:rerank, got '{}'", item);
    SearchParams p;
    p.nprobe = std::stoi(item.substr(0, colon));
    p.rerank = std::stoi(item.substr(colon + 1));
    out.push_back(p);
  }
  return out;
}

// ---- child modes
// ---------------------------------------------------------------------------------------

// --mode build: builds and saves WORK/idx-NAME; writes its timings to WORK/build-NAME.json.
void run_build(const bench::Args& args) {
  const std::string work = args.str("work");
  const Config c = config_named(args.str("config"));
  const auto set = EmbeddingSet::open(work + "/embeddings");
  IndexBuildOptions o;
  o.factory = c.factory;
  o.max_ram_bytes = int64_t(std::stod(args.str("max-ram-gib")) * double(int64_t(1) << 30));
  if (c.params.nprobe > 0) o.defaults.nprobe = c.params.nprobe;
  double last = 0;
  const double t0 = bench::now_seconds();
  o.progress = [&](const std::string& stage, int64_t done, int64_t total) {
    const double now = bench::now_seconds();
    if (now - last > 15 || done == total) {
      fmt::print(stderr, "build {}: {} {}/{} ({:.0f} s)\n", c.name, stage, done, total, now - t0);
      last = now;
    }
  };
  const auto index = DenseIndex::build(*set, o);
  const double build_s = bench::now_seconds() - t0;
  const std::string dir = work + "/idx-" + c.name;
  index->save(dir);
  const json out = {{"config", c.name},
                    {"factory", index->factory()},
                    {"build_s", build_s},
                    {"save_s", bench::now_seconds() - t0 - build_s},
                    {"build_hwm", bench::proc_status_bytes("VmHWM")},
                    {"index_bytes", int64_t(fs::file_size(dir + "/dense.faiss"))},
                    {"info", index->info()}};
  write_file_atomic(work + "/build-" + c.name + ".json", out.dump(2));
}

struct Latency {
  double p50_ms, p99_ms;
};

Latency percentiles(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  auto at = [&](double p) { return 1e3 * t[std::min(t.size() - 1, size_t(p * double(t.size())))]; };
  return {at(0.50), at(0.99)};
}

// Recall and latencies of `index` with `p` over the queries.
json measure(const DenseIndex& index, const float* q, int64_t nq, int dim,
             const std::vector<int64_t>& truth, const SearchParams& p, int64_t single_limit) {
  // One warm-up batch, then all queries in batches of 64 (timed; they give the recall).
  std::vector<int64_t> got(size_t(nq) * kK);
  std::vector<double> batch_t;
  index.search(std::min<int64_t>(64, nq), q, kK, p);
  for (int64_t b = 0; b < nq; b += 64) {
    const int64_t m = std::min<int64_t>(64, nq - b);
    const double t0 = bench::now_seconds();
    const auto r = index.search(m, q + b * dim, kK, p);
    if (m == 64) batch_t.push_back(bench::now_seconds() - t0);
    std::copy(r.ids.begin(), r.ids.end(), got.begin() + b * kK);
  }
  std::vector<double> single_t;
  const int64_t ns = std::min(nq, single_limit);
  for (int64_t i = 0; i < ns; ++i) {
    const double t0 = bench::now_seconds();
    index.search(1, q + i * dim, kK, p);
    single_t.push_back(bench::now_seconds() - t0);
  }
  const auto s = percentiles(single_t), b = percentiles(batch_t);
  return {{"nprobe", p.nprobe},
          {"rerank", p.rerank},
          {"recall", recall_at_k(got, truth, nq, kK)},
          {"single_p50_ms", s.p50_ms},
          {"single_p99_ms", s.p99_ms},
          {"batch64_p50_ms", b.p50_ms},
          {"batch64_p99_ms", b.p99_ms},
          {"single_queries", ns}};
}

// --mode search: loads WORK/idx-NAME with the embeddings, measures the defaults and the sweep;
// writes WORK/search-NAME.json.
void run_search(const bench::Args& args) {
  const std::string work = args.str("work");
  const Config c = config_named(args.str("config"));
  const int64_t rss_start = bench::proc_status_bytes("VmRSS");
  const auto set = EmbeddingSet::open(work + "/embeddings");
  int64_t nq = 0;
  const auto q = load_queries(work, &nq);
  const auto gt = json::parse(read_file(work + "/gt.json"));
  const auto truth = gt["ids"].get<std::vector<int64_t>>();
  const double t0 = bench::now_seconds();
  const auto index = DenseIndex::load(work + "/idx-" + c.name, set.get());
  const double load_s = bench::now_seconds() - t0;
  const int64_t rss_loaded = bench::proc_status_bytes("VmRSS");

  std::vector<SearchParams> runs = {c.params};
  if (c.name == "auto") {
    for (const auto& p : parse_sweep(args.str("sweep"))) runs.push_back(p);
  }
  json rows = json::array();
  for (const auto& p : runs) {
    // Exact and the reference scan everything per query: fewer single queries keep them short.
    const int64_t singles =
        args.integer(c.name == "auto" ? "single-queries" : "single-queries-ref");
    auto r = measure(*index, q.data(), nq, set->dim(), truth, p, singles);
    if (p.nprobe == 0) r["nprobe"] = index->defaults().nprobe;
    if (p.rerank < 0) r["rerank"] = index->exact_scores() ? 0 : index->defaults().rerank;
    fmt::print(stderr, "search {}: {}\n", c.name, r.dump());
    rows.push_back(r);
  }
  const json out = {{"config", c.name},
                    {"load_s", load_s},
                    {"loadavg", load_average()},
                    {"rss_start", rss_start},
                    {"rss_loaded", rss_loaded},
                    {"search_hwm", bench::proc_status_bytes("VmHWM")},
                    {"rss_end", bench::proc_status_bytes("VmRSS")},
                    {"rss_anon_end", bench::proc_status_bytes("RssAnon")},
                    {"rss_file_end", bench::proc_status_bytes("RssFile")},
                    {"runs", rows}};
  write_file_atomic(work + "/search-" + c.name + ".json", out.dump(2));
}

// ---- driver
// ------------------------------------------------------------------------------------------------

// Runs this program again with `mode` and `config`; false if it failed.
bool run_child(const bench::Args& args, const std::string& mode, const std::string& config) {
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  KVRAG_CHECK(len > 0, "cannot find /proc/self/exe");
  self[len] = '\0';
  const std::string cmd = fmt::format(
      "'{}' --mode {} --config {} --work '{}' --max-ram-gib {} --sweep '{}' --single-queries {} "
      "--single-queries-ref {}",
      self, mode, config, args.str("work"), args.str("max-ram-gib"), args.str("sweep"),
      args.str("single-queries"), args.str("single-queries-ref"));
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string ms(double v) { return v < 10 ? fmt::format("{:.2f}", v) : fmt::format("{:.0f}", v); }

int drive(const bench::Args& args) {
  const std::string work = args.str("work");
  const int64_t n = args.integer("n"), nq_want = args.integer("queries");
  const int dim = static_cast<int>(args.integer("dim"));
  fs::create_directories(work);
  const double max_ram_gib = std::stod(args.str("max-ram-gib"));
  fmt::print(
      stderr, "bench_retrieval_scale: n={} dim={} queries={} work={} cores={} RAM={:.1f} GiB\n", n,
      dim, nq_want, work, std::thread::hardware_concurrency(), gib(double(mem_total_bytes())));

  double t = bench::now_seconds();
  generate(work, n, dim, nq_want);
  const double gen_s = bench::now_seconds() - t;
  const auto set = EmbeddingSet::open(work + "/embeddings", n);
  int64_t nq = 0;
  const auto q = load_queries(work, &nq);

  // Exact ground truth (kept), and the exact scan's time for the whole query set.
  json gt;
  if (fs::exists(work + "/gt.json")) {
    gt = json::parse(read_file(work + "/gt.json"));
  } else {
    double scan_s = 0;
    const auto ids = exact_scan(*set, q.data(), nq, kK, &scan_s, true);
    // One query alone: the latency of exact search without a RAM-resident index.
    double single_s = 0;
    exact_scan(*set, q.data(), 1, kK, &single_s, false);
    gt = {
        {"k", kK}, {"ids", ids}, {"scan_s", scan_s}, {"single_scan_s", single_s}, {"queries", nq}};
    write_file_atomic(work + "/gt.json", gt.dump());
  }
  fmt::print(stderr, "exact chunked scan: {:.1f} s for {} queries, {:.1f} s for one\n",
             gt["scan_s"].get<double>(), nq, gt["single_scan_s"].get<double>());

  // Build and search each configuration in its own processes.
  std::vector<std::string> names;
  {
    std::stringstream ss(args.str("configs"));
    std::string s;
    while (std::getline(ss, s, ',')) names.push_back(s);
  }
  json results = json::object();
  for (const auto& name : names) {
    const Config c = config_named(name);
    json r = {{"config", name}};
    const double float_bytes = double(n) * dim * 4;
    if (c.in_ram_floats && float_bytes > 0.7 * double(mem_total_bytes())) {
      r["infeasible"] =
          fmt::format("needs {:.1f} GiB of float32 vectors in RAM (machine: {:.1f} GiB)",
                      gib(float_bytes), gib(double(mem_total_bytes())));
      results[name] = r;
      fmt::print(stderr, "{}: {}\n", name, r["infeasible"].get<std::string>());
      continue;
    }
    if (!fs::exists(work + "/build-" + name + ".json")) {
      fmt::print(stderr, "== build {}\n", name);
      if (!run_child(args, "build", name)) {
        r["failed"] = "build";
        results[name] = r;
        continue;
      }
    }
    r["build"] = json::parse(read_file(work + "/build-" + name + ".json"));
    fmt::print(stderr, "== search {}\n", name);
    if (!run_child(args, "search", name)) {
      r["failed"] = "search";
      results[name] = r;
      continue;
    }
    r["search"] = json::parse(read_file(work + "/search-" + name + ".json"));
    results[name] = r;
  }
  const json all = {{"n", n},
                    {"dim", dim},
                    {"queries", nq},
                    {"gen_s", gen_s},
                    {"gt", {{"scan_s", gt["scan_s"]}, {"single_scan_s", gt["single_scan_s"]}}},
                    {"max_ram_gib", max_ram_gib},
                    {"results", results}};
  write_file_atomic(work + "/results.json", all.dump(2));

  // The table.
  fmt::print(
      "\n### Dense retrieval, n = {}, dim = {}, {} queries, recall@10 vs exact, {} threads\n\n", n,
      dim, nq, std::thread::hardware_concurrency());
  fmt::print(
      "| config | factory | nprobe | rerank | build | build peak RSS | index on disk | search RSS "
      "(HWM) | recall@10 | 1-query p50 / p99 ms | 64-batch p50 / p99 ms |\n");
  fmt::print("|---|---|---|---|---|---|---|---|---|---|---|\n");
  const double chunked_batch_ms = 1e3 * gt["scan_s"].get<double>();
  for (const auto& name : names) {
    const json& r = results[name];
    if (r.contains("infeasible") || r.contains("failed")) {
      const std::string why = r.contains("infeasible")
                                  ? "infeasible: " + r["infeasible"].get<std::string>()
                                  : "failed in " + r["failed"].get<std::string>();
      fmt::print("| {} | {} | | | | | | | | | |\n", name, why);
      if (name == "exact") {
        fmt::print(
            "| exact (chunked scan from disk) | float16 shards, BLAS per {}-row chunk | | | | | "
            "{:.1f} GiB (the embeddings) | | 1.000 | {} / – | {} for all {} queries ({} per query) "
            "|\n",
            kChunk, gib(double(n) * dim * 2), ms(1e3 * gt["single_scan_s"].get<double>()),
            ms(chunked_batch_ms), nq, ms(chunked_batch_ms / double(nq)));
      }
      continue;
    }
    const json& b = r["build"];
    const json& s = r["search"];
    for (const json& run : s["runs"]) {
      fmt::print(
          "| {} | {} | {} | {} | {:.0f} s | {:.2f} GiB | {:.2f} GiB | {:.2f} GiB | {:.3f} | {} / "
          "{} | {} / {} |\n",
          name, b["factory"].get<std::string>(), run["nprobe"].get<int>(), run["rerank"].get<int>(),
          b["build_s"].get<double>(), gib(b["build_hwm"].get<double>()),
          gib(b["index_bytes"].get<double>()), gib(s["search_hwm"].get<double>()),
          run["recall"].get<double>(), ms(run["single_p50_ms"].get<double>()),
          ms(run["single_p99_ms"].get<double>()), ms(run["batch64_p50_ms"].get<double>()),
          ms(run["batch64_p99_ms"].get<double>()));
    }
  }
  std::string loads;
  for (const auto& name : names) {
    if (results[name].contains("search"))
      loads += fmt::format(" {} {:.1f};", name, results[name]["search"]["loadavg"].get<double>());
  }
  fmt::print(
      "\nLoad average (1 min) after each search:{} the machine is shared, so latencies include "
      "waiting for CPU.\n",
      loads);
  fmt::print(
      "\nData generation {:.0f} s; exact chunked scan of the {} queries {:.1f} s (one query alone: "
      "{:.1f} s). Search RSS is the search process's peak (VmHWM) including the program itself "
      "({:.2f} GiB before loading) (the float16 rows read for re-ranking go through the page "
      "cache, not the process); results in {}/results.json.\n",
      gen_s, nq, gt["scan_s"].get<double>(), gt["single_scan_s"].get<double>(),
      results.contains("auto") && results["auto"].contains("search")
          ? gib(results["auto"]["search"]["rss_start"].get<double>())
          : 0.0,
      work);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  kvrag::tune_malloc();  // as the kvrag binary does (core/malloc_tuning.h)
  try {
    const bench::Args args(argc, argv,
                           {{"work", "/tmp/kvrag-retrieval-scale"},
                            {"n", "1000000"},
                            {"dim", "768"},
                            {"queries", "1000"},
                            {"max-ram-gib", "2"},
                            {"configs", "exact,ivf100,auto"},
                            {"sweep", ""},
                            {"single-queries", "1000"},
                            {"single-queries-ref", "100"},
                            {"mode", "run"},
                            {"config", ""}},
                           {});
    const std::string mode = args.str("mode");
    if (mode == "build") {
      run_build(args);
    } else if (mode == "search") {
      run_search(args);
    } else if (mode == "run") {
      return drive(args);
    } else {
      fail("unknown --mode {}", mode);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_retrieval_scale: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
