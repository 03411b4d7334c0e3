// DenseIndex: exactness of Flat, recall of IVF-Flat and IVF-PQ + float16 re-ranking against
// exact search, save/load, merging shard builds, the "auto" rule, and the errors.
//
// The vectors are synthetic but shaped like embeddings: L2-normalised points around 40 cluster
// centres, varying along an 8-dimensional latent subspace plus a little isotropic noise (i.i.d.
// Gaussian vectors would make every approximate index look broken: all neighbours would be
// equally far). Queries are fresh points from the same distribution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "core/atomic_file.h"
#include "core/error.h"
#include "index/dense_index.h"
#include "index/embedding_set.h"
#include "index/index_build.h"
#include "index/npy_file.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

template <typename F>
std::string dense_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_DENSE_ERROR(stmt, part)                                          \
  do {                                                                          \
    const std::string msg_ = dense_error([&] { stmt; });                        \
    EXPECT_NE(msg_.find(part), std::string::npos) << "error: '" << msg_ << "'"; \
  } while (0)

struct Data {
  int d = 0;
  std::vector<float> x;  // [n × d], rounded to float16 (what the index sees)
  std::vector<float> q;  // [nq × d]
  int64_t n() const { return int64_t(x.size()) / d; }
  int64_t nq() const { return int64_t(q.size()) / d; }
};

Data make_data(int64_t n, int d, int64_t nq, uint64_t seed = 42) {
  constexpr int kClusters = 40, kLatent = 8;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  auto normalize = [d](float* v) {
    double s = 0;
    for (int i = 0; i < d; ++i) s += double(v[i]) * v[i];
    const float inv = float(1.0 / std::sqrt(s));
    for (int i = 0; i < d; ++i) v[i] *= inv;
  };
  std::vector<float> centers(kClusters * d), basis(kLatent * d);
  for (auto& v : centers) v = g(rng);
  for (int c = 0; c < kClusters; ++c) normalize(&centers[c * d]);
  for (auto& v : basis) v = g(rng);
  for (int l = 0; l < kLatent; ++l) normalize(&basis[l * d]);
  auto point = [&](float* out) {
    const int c = int(rng() % kClusters);
    float z[kLatent];
    for (float& v : z) v = g(rng);
    for (int i = 0; i < d; ++i) {
      float v = centers[c * d + i] + 0.1f / std::sqrt(float(d)) * g(rng);
      for (int l = 0; l < kLatent; ++l) v += 0.15f * z[l] * basis[l * d + i];
      out[i] = v;
    }
    normalize(out);
  };
  Data data;
  data.d = d;
  data.x.resize(n * d);
  data.q.resize(nq * d);
  for (int64_t i = 0; i < n; ++i) point(&data.x[i * d]);
  for (int64_t i = 0; i < nq; ++i) point(&data.q[i * d]);
  for (auto& v : data.x) v = half_to_float(float_to_half(v));
  return data;
}

// Writes rows [begin, end) of `data` as DIR/embeddings (local row numbers, 4096-row shards),
// with checksums as `kvrag embed` writes them if `checksums`.
std::string write_embeddings(const std::string& dir, const Data& data, int64_t begin, int64_t end,
                             const std::string& fingerprint = "feedfacecafebeef",
                             bool checksums = false) {
  const std::string emb = dir + "/embeddings";
  fs::create_directories(emb);
  write_file_atomic(
      emb + "/encoder.json",
      nlohmann::json{{"path", "/enc"}, {"fingerprint", fingerprint}, {"dim", data.d}}.dump());
  std::vector<uint16_t> h;
  for (int64_t lo = begin; lo < end; lo += 4096) {
    const int64_t hi = std::min(end, lo + 4096);
    h.resize((hi - lo) * data.d);
    float_to_half(&data.x[lo * data.d], h.data(), h.size());
    if (checksums) {
      EmbeddingSet::write_shard(emb, lo - begin, hi - begin, NpyDtype::kF16, h.data(), data.d);
    } else {
      write_npy(emb + "/" + EmbeddingSet::shard_name(lo - begin, hi - begin), NpyDtype::kF16,
                h.data(), hi - lo, data.d);
    }
  }
  return emb;
}

// Exact top-k ids of each query by brute force.
std::vector<std::vector<int64_t>> exact_topk(const Data& data, int k) {
  std::vector<std::vector<int64_t>> out(data.nq());
  std::vector<std::pair<float, int64_t>> s(data.n());
  for (int64_t q = 0; q < data.nq(); ++q) {
    for (int64_t i = 0; i < data.n(); ++i) {
      float dot = 0;
      for (int c = 0; c < data.d; ++c) dot += data.q[q * data.d + c] * data.x[i * data.d + c];
      s[i] = {dot, i};
    }
    std::partial_sort(s.begin(), s.begin() + k, s.end(),
                      [](auto& a, auto& b) { return a.first > b.first; });
    for (int j = 0; j < k; ++j) out[q].push_back(s[j].second);
  }
  return out;
}

double recall_at(const SearchResult& r, const std::vector<std::vector<int64_t>>& truth, int k) {
  double hits = 0;
  for (size_t q = 0; q < truth.size(); ++q) {
    for (int j = 0; j < k; ++j) {
      hits += std::count(truth[q].begin(), truth[q].end(), r.ids[q * k + j]) > 0;
    }
  }
  return hits / (double(truth.size()) * k);
}

// Faiss's PQ training (k-means of 256 centroids per sub-vector) dominates the build time of
// these small indexes: the tests train on a 5,000-vector sample.
IndexBuildOptions with_factory(const std::string& factory) {
  IndexBuildOptions o;
  o.factory = factory;
  o.train_size = 5000;
  return o;
}

// One clustered data set for the recall tests (20k × 64, 200 queries), built once.
class DenseRecall : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir();
    data_ = new Data(make_data(20000, 64, 200));
    write_embeddings(root_->path(), *data_, 0, data_->n());
    set_ = EmbeddingSet::open(root_->path() + "/embeddings").release();
    truth_ = new std::vector<std::vector<int64_t>>(exact_topk(*data_, 10));
  }
  static void TearDownTestSuite() {
    delete set_;
    delete truth_;
    delete data_;
    delete root_;
  }
  static TempDir* root_;
  static Data* data_;
  static EmbeddingSet* set_;
  static std::vector<std::vector<int64_t>>* truth_;
};
TempDir* DenseRecall::root_ = nullptr;
Data* DenseRecall::data_ = nullptr;
EmbeddingSet* DenseRecall::set_ = nullptr;
std::vector<std::vector<int64_t>>* DenseRecall::truth_ = nullptr;

TEST_F(DenseRecall, FlatIsExact) {
  const auto index = DenseIndex::build(*set_, with_factory("Flat"));
  EXPECT_TRUE(index->exact_scores());
  EXPECT_EQ(index->size(), data_->n());
  const auto r = index->search(data_->nq(), data_->q.data(), 10);
  EXPECT_GE(recall_at(r, *truth_, 10), 0.998);  // float summation order may swap near-ties
  for (int64_t q = 0; q < data_->nq(); ++q) {
    for (int j = 0; j < 10; ++j) {
      const int64_t id = r.ids[q * 10 + j];
      float dot = 0;
      for (int c = 0; c < data_->d; ++c)
        dot += data_->q[q * data_->d + c] * data_->x[id * data_->d + c];
      ASSERT_NEAR(r.scores[q * 10 + j], dot, 1e-5);
      if (j > 0) ASSERT_GE(r.scores[q * 10 + j - 1], r.scores[q * 10 + j]);
    }
  }
  // A single query gets what it gets in a batch.
  for (int64_t q : {0, 7, 199}) {
    const auto one = index->search(1, data_->q.data() + q * data_->d, 10);
    EXPECT_EQ(one.ids, std::vector<int64_t>(r.ids.begin() + q * 10, r.ids.begin() + (q + 1) * 10));
    for (int j = 0; j < 10; ++j) EXPECT_NEAR(one.scores[j], r.scores[q * 10 + j], 1e-5);
  }
}

TEST_F(DenseRecall, IvfFlatRecallAndNprobe) {
  const auto index = DenseIndex::build(*set_, with_factory("IVF64,Flat"));
  EXPECT_TRUE(index->exact_scores());
  EXPECT_EQ(index->defaults().nprobe, 8);
  const auto r = index->search(data_->nq(), data_->q.data(), 10);
  EXPECT_GE(recall_at(r, *truth_, 10), 0.95);
  SearchParams one;
  one.nprobe = 1;
  const double low = recall_at(index->search(data_->nq(), data_->q.data(), 10, one), *truth_, 10);
  EXPECT_LT(low, recall_at(r, *truth_, 10));  // the knob reaches Faiss
  // A single query (its lists split across the threads) gets what it gets in the batch.
  for (int64_t q : {3, 150}) {
    const auto one = index->search(1, data_->q.data() + q * data_->d, 10);
    EXPECT_EQ(one.ids, std::vector<int64_t>(r.ids.begin() + q * 10, r.ids.begin() + (q + 1) * 10));
  }
  SearchParams all;
  all.nprobe = 64;
  EXPECT_GE(recall_at(index->search(data_->nq(), data_->q.data(), 10, all), *truth_, 10), 0.998);
}

TEST_F(DenseRecall, IvfPqWithFloat16RerankRecall) {
  // An HNSW coarse quantizer, 8-byte PQ codes (1/16 of float16), re-ranked with the vectors.
  const auto index = DenseIndex::build(*set_, with_factory("IVF64_HNSW32,PQ8np"));
  EXPECT_FALSE(index->exact_scores());
  EXPECT_GT(index->defaults().rerank, 0);
  const auto r = index->search(data_->nq(), data_->q.data(), 10);
  const double reranked = recall_at(r, *truth_, 10);
  EXPECT_GE(reranked, 0.95);
  SearchParams off;
  off.rerank = 0;
  const double raw = recall_at(index->search(data_->nq(), data_->q.data(), 10, off), *truth_, 10);
  EXPECT_LT(raw, reranked);
  // Re-ranked scores are exact inner products with the float16 vectors.
  for (int j = 0; j < 10; ++j) {
    const int64_t id = r.ids[j];
    float dot = 0;
    for (int c = 0; c < data_->d; ++c) dot += data_->q[c] * data_->x[id * data_->d + c];
    EXPECT_NEAR(r.scores[j], dot, 1e-5);
  }
  // A single query gives what it gives in a batch.
  const auto one = index->search(1, data_->q.data() + 5 * data_->d, 10);
  EXPECT_EQ(one.ids, std::vector<int64_t>(r.ids.begin() + 50, r.ids.begin() + 60));
}

TEST_F(DenseRecall, SaveLoadGivesIdenticalResults) {
  const auto built = DenseIndex::build(*set_, with_factory("IVF32,PQ8np"));
  const std::string dir = root_->path() + "/saved";
  built->save(dir);
  const auto meta = nlohmann::json::parse(read_file(dir + "/dense.json"));
  EXPECT_EQ(meta["factory"], "IVF32,PQ8np");
  EXPECT_EQ(meta["dim"], 64);
  EXPECT_EQ(meta["size"], 20000);
  EXPECT_EQ(meta["metric"], "ip");
  EXPECT_EQ(meta["fingerprint"], "feedfacecafebeef");
  EXPECT_EQ(meta["nprobe"], 8);
  EXPECT_EQ(meta["rerank"], 256);
  EXPECT_EQ(meta["faiss_bytes"], fs::file_size(dir + "/dense.faiss"));

  const auto loaded = DenseIndex::load(dir, set_);
  EXPECT_EQ(loaded->factory(), "IVF32,PQ8np");
  const auto a = built->search(data_->nq(), data_->q.data(), 10);
  const auto b = loaded->search(data_->nq(), data_->q.data(), 10);
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.scores, b.scores);
  // Without the embeddings the default re-ranking is skipped; asking for it is an error.
  const auto bare = DenseIndex::load(dir, nullptr);
  SearchParams off;
  off.rerank = 0;
  EXPECT_EQ(bare->search(data_->nq(), data_->q.data(), 10).ids,
            built->search(data_->nq(), data_->q.data(), 10, off).ids);
  SearchParams on;
  on.rerank = 50;
  EXPECT_DENSE_ERROR(bare->search(1, data_->q.data(), 10, on), "re-ranking needs the embeddings");
  // Search defaults given at build time are stored.
  IndexBuildOptions o = with_factory("IVF32,Flat");
  o.defaults.nprobe = 5;
  DenseIndex::build(*set_, o)->save(dir);
  EXPECT_EQ(DenseIndex::load(dir, set_)->defaults().nprobe, 5);
  EXPECT_EQ(DenseIndex::load(dir, set_)->info()["nlist"], 32);
}

TEST_F(DenseRecall, HnswEfSearchKnob) {
  // Faiss 1.7.3 reads efSearch from the graph, so DenseIndex sets it there (under a lock).
  const auto index = DenseIndex::build(*set_, with_factory("HNSW16"));
  SearchParams low, high;
  low.ef_search = 10;
  high.ef_search = 200;
  const double r_high =
      recall_at(index->search(data_->nq(), data_->q.data(), 10, high), *truth_, 10);
  const double r_low = recall_at(index->search(data_->nq(), data_->q.data(), 10, low), *truth_, 10);
  EXPECT_GE(r_high, 0.95);
  EXPECT_LE(r_low, r_high);
}

TEST(DenseIndex, MergeOfShardsEqualsOneBuild) {
  TempDir root;
  const Data data = make_data(6000, 32, 50, 7);
  for (const std::string factory : {"IVF16,Flat", "IVF16,PQ8np", "Flat"}) {
    SCOPED_TRACE(factory);
    const std::string full = root / "full", trained = root / "trained";
    fs::remove_all(full);
    write_embeddings(full, data, 0, data.n());
    const auto all = EmbeddingSet::open(full + "/embeddings");
    IndexBuildOptions t = with_factory(factory);
    t.train_only = true;
    const auto empty = DenseIndex::build(*all, t);
    EXPECT_EQ(empty->size(), 0);
    empty->save(trained);

    IndexBuildOptions o;
    o.train_from = trained;
    o.add_batch = 1000;  // several batches
    const auto one = DenseIndex::build(*all, o);
    EXPECT_EQ(one->factory(), factory);

    std::vector<std::string> shards;
    const int64_t cuts[] = {0, 2500, 4100, 6000};
    for (int s = 0; s < 3; ++s) {
      const std::string dir = root / ("shard" + std::to_string(s));
      fs::remove_all(dir);
      write_embeddings(dir, data, cuts[s], cuts[s + 1], "feedfacecafebeef", /*checksums=*/true);
      const auto part = EmbeddingSet::open(dir + "/embeddings");
      DenseIndex::build(*part, o)->save(dir);
      shards.push_back(dir);
    }
    const std::string merged = root / "merged";
    fs::remove_all(merged);
    merge_indexes(shards, merged);
    // assembled from the shards, their checksums with them
    const auto vectors = EmbeddingSet::open(merged + "/embeddings", data.n());
    const auto checked = vectors->verify(ChecksumCheck::kFull);
    EXPECT_EQ(checked.shards, 3);
    EXPECT_EQ(checked.unchecked, 0);
    const auto m = DenseIndex::load(merged, vectors.get());
    EXPECT_EQ(m->size(), data.n());
    const auto a = one->search(data.nq(), data.q.data(), 10);
    const auto b = m->search(data.nq(), data.q.data(), 10);
    EXPECT_EQ(a.ids, b.ids);
    EXPECT_EQ(a.scores, b.scores);
  }
}

TEST(DenseIndex, MergeRejectsIncompatibleShards) {
  TempDir root;
  const Data data = make_data(3000, 16, 1, 9);
  auto build = [&](const std::string& name, const std::string& factory,
                   const std::string& fingerprint = "feedfacecafebeef", uint64_t seed = 1) {
    const std::string dir = root / name;
    write_embeddings(dir, data, 0, data.n(), fingerprint);
    const auto set = EmbeddingSet::open(dir + "/embeddings");
    IndexBuildOptions o = with_factory(factory);
    o.seed = seed;
    DenseIndex::build(*set, o)->save(dir);
    return dir;
  };
  const std::string a = build("a", "IVF16,Flat"),
                    b = build("b", "IVF16,Flat", "feedfacecafebeef", 2);
  EXPECT_DENSE_ERROR(merge_indexes({a, b}, root / "out"), "not trained identically");
  const std::string c = build("c", "IVF16,PQ4np");
  EXPECT_DENSE_ERROR(merge_indexes({a, c}, root / "out"), "factory 'IVF16,PQ4np' differs");
  const std::string e = build("e", "IVF16,Flat", "0000000000000000");
  EXPECT_DENSE_ERROR(merge_indexes({a, e}, root / "out"), "shards must share one encoder");
  const std::string h = build("h", "HNSW8");
  EXPECT_DENSE_ERROR(merge_indexes({h, h}, root / "out"), "cannot be merged");
  EXPECT_DENSE_ERROR(merge_indexes({}, root / "out"), "no shard folders");
  EXPECT_DENSE_ERROR(merge_indexes({a, root / "nowhere"}, root / "out"),
                     "nowhere/dense.json: missing");
  EXPECT_FALSE(fs::exists(root / "out"));
}

TEST(DenseIndex, ErrorsNameTheProblem) {
  TempDir root;
  const Data data = make_data(2000, 16, 2, 11);
  const std::string dir = root / "idx";
  write_embeddings(dir, data, 0, data.n());
  const auto set = EmbeddingSet::open(dir + "/embeddings");
  const auto index = DenseIndex::build(*set, with_factory("IVF8,PQ4np"));
  index->save(dir);

  // Search arguments.
  EXPECT_DENSE_ERROR(index->search(1, data.q.data(), 0), "k must be at least 1");
  EXPECT_DENSE_ERROR(index->search(1, data.q.data(), -3), "k must be at least 1");
  EXPECT_DENSE_ERROR(index->search(1, data.q.data(), 2001), "exceeds the 2000 vectors");
  EXPECT_EQ(index->search(1, data.q.data(), 2000).ids.size(), 2000u);
  EXPECT_DENSE_ERROR(index->search(1, 17, data.q.data(), 5),
                     "query dimension 17 does not match the index dimension 16");
  EXPECT_EQ(index->search(0, 16, nullptr, 5).ids.size(), 0u);
  std::vector<float> nan_query(16, NAN);
  EXPECT_DENSE_ERROR(index->search(1, nan_query.data(), 5), "non-finite");
  SearchParams bad;
  bad.nprobe = -1;
  EXPECT_DENSE_ERROR(index->search(1, data.q.data(), 5, bad), "nprobe must be");

  // Build options.
  EXPECT_DENSE_ERROR(DenseIndex::build(*set, with_factory("IVF4096,Flat")),
                     "training vectors for 4096 IVF lists");
  EXPECT_DENSE_ERROR(DenseIndex::build(*set, with_factory("NotAFactory")),
                     "invalid Faiss factory string 'NotAFactory'");
  const std::string other = root / "other";
  write_embeddings(other, data, 0, data.n(), "0123456789abcdef");
  const auto other_set = EmbeddingSet::open(other + "/embeddings");
  IndexBuildOptions from;
  from.train_from = dir;
  EXPECT_DENSE_ERROR(DenseIndex::build(*other_set, from),
                     "built from encoder fingerprint feedfacecafebeef");

  // Loading: fingerprint and size of the embeddings.
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, other_set.get()), "rebuild the index");
  const std::string small = root / "small";
  write_embeddings(small, data, 0, 1000);
  const auto small_set = EmbeddingSet::open(small + "/embeddings");
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, small_set.get()), "index holds 2000 vectors, but");

  // Damaged files.
  const std::string faiss_path = dir + "/dense.faiss", json_path = dir + "/dense.json";
  const std::string good_faiss = read_file(faiss_path), good_json = read_file(json_path);
  std::string flipped = good_faiss;
  flipped[flipped.size() / 2] ^= 0x40;
  write_file_atomic(faiss_path, flipped);
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, set.get()), "dense.faiss: checksum");
  write_file_atomic(faiss_path, good_faiss.substr(0, good_faiss.size() / 3));
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, set.get()),
                     "dense.faiss: " + std::to_string(good_faiss.size() / 3) + " bytes");
  // Without a recorded checksum, Faiss's own parse errors still come back as Error naming the file.
  auto meta = nlohmann::json::parse(good_json);
  meta.erase("faiss_checksum");
  write_file_atomic(json_path, meta.dump());
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, set.get()), "dense.faiss: cannot read the Faiss index");
  write_file_atomic(faiss_path, "garbage, not an index");
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, set.get()), "dense.faiss: cannot read the Faiss index");
  fs::remove(faiss_path);
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, set.get()), "dense.faiss: missing");
  write_file_atomic(faiss_path, good_faiss);
  meta["size"] = 1999;
  write_file_atomic(json_path, meta.dump());
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, set.get()), "holds 2000 vectors, dense.json says 1999");
  write_file_atomic(json_path, "{\"factory\": 3}");
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, set.get()),
                     "dense.json: \"factory\" is missing or has the wrong type");
  write_file_atomic(json_path, "{oops");
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, set.get()), "dense.json: invalid JSON");
  fs::remove(json_path);
  EXPECT_DENSE_ERROR(DenseIndex::load(dir, set.get()), "dense.json: missing");
  write_file_atomic(json_path, good_json);
  EXPECT_EQ(DenseIndex::load(dir, set.get())->size(), 2000);
}

TEST(DenseIndex, BuildRefusesAShardChangedSinceItWasEmbedded) {
  TempDir root;
  const Data data = make_data(5000, 16, 1, 13);
  const std::string dir = root / "idx";
  const std::string emb = write_embeddings(dir, data, 0, data.n(), "feedfacecafebeef", true);
  const std::string shard = emb + "/" + EmbeddingSet::shard_name(4096, 5000);
  ASSERT_TRUE(fs::exists(shard + ".sum"));
  const std::string good = read_file(shard);
  std::string changed = good;
  changed[changed.size() - 5] ^= 0x01;  // one bit of the last vector
  write_file_atomic(shard, changed);
  const IndexBuildOptions flat = with_factory("Flat");
  const std::string msg = dense_error([&] { build_dense_index(dir, flat, false); });
  // the file is one 64 KiB block
  EXPECT_NE(msg.find(shard + ": checksum mismatch in bytes [0, " + std::to_string(good.size()) +
                     ") (recorded "),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("rerun kvrag embed"), std::string::npos) << msg;
  EXPECT_FALSE(fs::exists(dir + "/dense.faiss"));

  write_file_atomic(shard, good);
  EXPECT_EQ(build_dense_index(dir, flat, false).size, data.n());
  // Shards embedded before kvrag recorded checksums build as before.
  for (const auto& e : fs::directory_iterator(emb)) {
    if (e.path().extension() == ".sum") fs::remove(e.path());
  }
  EXPECT_EQ(build_dense_index(dir, flat, false).size, data.n());
}

TEST(DenseIndex, AutoFactoryRule) {
  const int64_t gib = int64_t(1) << 30;
  EXPECT_EQ(choose_factory(50000, 768, 2 * gib), "Flat");
  // 147 MB of floats > budget
  EXPECT_EQ(choose_factory(50000, 768, 100 << 20), "IVF1024_HNSW32,PQ96np");
  EXPECT_EQ(choose_factory(300000, 768, 2 * gib), "IVF2048,Flat");
  EXPECT_EQ(choose_factory(1000000, 768, 2 * gib), "IVF4096_HNSW32,PQ96np");
  EXPECT_EQ(choose_factory(10000000, 768, 2 * gib), "IVF16384_HNSW32,PQ96np");
  EXPECT_EQ(choose_factory(5000000, 64, 2 * gib), "IVF8192_HNSW32,Flat");
  EXPECT_EQ(choose_factory(10000000, 64, 2 * gib), "IVF16384_HNSW32,PQ8np");
  EXPECT_EQ(choose_factory(1000, 8, 2 * gib), "Flat");
  EXPECT_DENSE_ERROR(choose_factory(0, 8, gib), "need n");
}

}  // namespace
}  // namespace kvrag
