// segment → embed → index → search, end to end through the kvrag binary, on a synthetic corpus
// and a random-weight encoder: resumption, sharding, exactness of the dense path, the shards'
// checksums, the encoder's vocabulary, errors.

#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/folder_lock.h"
#include "index/embed_job.h"
#include "index/embedder.h"
#include "index/embedding_set.h"
#include "index/index_retriever.h"
#include "index/segment_store.h"
#include "ops/cpu_isa.h"
#include "support/cli_runner.h"
#include "support/retrieval_fixture.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;
using test::run_kvrag;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// {file name → bytes} of an embeddings folder's shards.
std::map<std::string, std::string> shard_bytes(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".npy")
      out[e.path().filename().string()] = slurp(e.path().string());
  }
  return out;
}

class EmbedSearch : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new test::TempDir();
    test::write_tiny_encoder(*root_ / "encoder", 1);
    test::write_tiny_encoder(*root_ / "other-encoder", 2);
    test::write_corpus(*root_ / "corpus.jsonl", 60, 90);
  }
  static void TearDownTestSuite() { delete root_; }

  // A fresh index folder with segments.sqlite.
  static std::string segmented(const std::string& name) {
    const std::string index = *root_ / name;
    const auto r =
        run_kvrag("segment --corpus " + (*root_ / "corpus.jsonl") + " --tokenizer " +
                  (*root_ / "encoder") + "/vocab.txt --index " + index + " --window 48 --stride 8");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return index;
  }
  static std::string embed_args(const std::string& index, const std::string& extra = "") {
    return "embed --index " + index + " --encoder " + (*root_ / "encoder") + " --chunk 16 " + extra;
  }

  static test::TempDir* root_;
};
test::TempDir* EmbedSearch::root_ = nullptr;

TEST_F(EmbedSearch, DenseFlatSearchEqualsExactInnerProducts) {
  const auto index = segmented("exact");
  auto r = run_kvrag(embed_args(index));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_kvrag("index build --index " + index + " --factory Flat");
  ASSERT_EQ(r.exit_code, 0) << r.err;

  const auto store = SegmentStore::open(index + "/segments.sqlite");
  const auto vectors = EmbeddingSet::open(index + "/embeddings", store->size());
  ASSERT_GT(store->size(), 60);
  const std::string question = "kaka lomi renvas tuzor";
  r = run_kvrag("search --index " + index + " --mode dense -k 5 --jsonl",
                json{{"question", question}}.dump() + "\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto results = json::parse(r.out)["results"];
  ASSERT_EQ(results.size(), 5u);

  // The same question through the library (in fp32, as search encodes questions), scored
  // against every stored vector.
  EmbedderOptions fp32;
  fp32.dtype = "fp32";
  const auto embedder = Embedder::load(*root_ / "encoder", fp32);
  std::vector<float> q(embedder->dim());
  embedder->encode({question}, q.data());
  std::vector<float> all(store->size() * vectors->dim());
  vectors->get_range(0, store->size(), all.data());
  const auto scores = torch::from_blob(all.data(), {store->size(), vectors->dim()})
                          .matmul(torch::from_blob(q.data(), {vectors->dim()}));
  const auto top = std::get<1>(scores.topk(5));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(results[i]["segment_id"].get<int64_t>(), top[i].item<int64_t>()) << "rank " << i;
    EXPECT_NEAR(results[i]["score"].get<double>(), scores[top[i]].item<double>(), 1e-3);
    EXPECT_EQ(results[i]["text"].get<std::string>(), store->get(top[i].item<int64_t>()).text);
  }
}

// An int8 encoder embeds close to the fp32 one, at a cosine near 1, on every kernel path (with
// VNNI or on AVX2, the long text's products round its activations to int8 codes).
TEST_F(EmbedSearch, Int8EncoderEmbedsCloseToFp32) {
  EmbedderOptions fp32, int8;
  fp32.dtype = "fp32";
  int8.dtype = "int8";
  const auto a = Embedder::load(*root_ / "encoder", fp32);
  for (const auto isa : supported_cpu_isas()) {
    const ScopedCpuIsa scope(isa);
    const auto b = Embedder::load(*root_ / "encoder", int8);
    const std::vector<std::string> texts = {
        "kaka lomi renvas tuzor",
        "a longer passage of several words that fills more than sixteen "
        "positions of the encoder, so that the int8 product runs as a GEMM and not a matrix-vector "
        "loop",
        "tuzor"};
    std::vector<float> va(texts.size() * a->dim()), vb(texts.size() * b->dim());
    a->encode(texts, va.data());
    b->encode(texts, vb.data());
    const auto ta = torch::from_blob(va.data(), {int64_t(texts.size()), a->dim()});
    const auto tb = torch::from_blob(vb.data(), {int64_t(texts.size()), b->dim()});
    const auto cos = torch::cosine_similarity(ta, tb, 1);  // [3]
    EXPECT_GT(cos.min().item<double>(), 0.999) << cpu_isa_name(isa) << " " << cos;
    EXPECT_GT((ta - tb).abs().max().item<double>(), 0.0) << cpu_isa_name(isa);  // int8 ran
  }
}

TEST_F(EmbedSearch, OneWriterPerIndexFolder) {
  const auto index = segmented("locked");
  const std::string holder = "PID " + std::to_string(getpid()) + " (kvrag segment)";
  {
    const FolderLock segmenting(index, LockMode::kExclusive, "kvrag segment");
    auto r = run_kvrag(embed_args(index));
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.err, index + ": kvrag embed cannot start: " + holder)) << r.err;
    r = run_kvrag("segment --corpus " + (*root_ / "corpus.jsonl") + " --tokenizer " +
                  (*root_ / "encoder") + "/vocab.txt --index " + index + " --window 48 --stride 8");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.err, "kvrag segment cannot start: " + holder)) << r.err;
    EXPECT_FALSE(fs::exists(index + "/embeddings"));
  }
  ASSERT_EQ(run_kvrag(embed_args(index)).exit_code, 0);
  {
    // An embedding shard at work (shards share the folder) keeps the index builder out.
    const FolderLock embedding(index, LockMode::kShared, "kvrag embed");
    const auto r = run_kvrag("index build --index " + index + " --factory Flat");
    EXPECT_NE(r.exit_code, 0);
    EXPECT_TRUE(contains(r.err, "kvrag index build cannot start")) << r.err;
    EXPECT_FALSE(fs::exists(index + "/dense.faiss"));
  }
  // Readers take no lock: search works while a writer holds the folder.
  ASSERT_EQ(run_kvrag("index build --index " + index + " --factory Flat").exit_code, 0);
  const FolderLock writing(index, LockMode::kExclusive, "kvrag index build");
  const auto r = run_kvrag("search --index " + index + " --mode dense -k 2 \"kaka lomi\"");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(EmbedSearch, InterruptedEmbeddingResumesToIdenticalVectors) {
  // Small batches (so that the kill lands between shards), the same in every run: a batch's
  // shape decides how BLAS blocks its products, and so the last bits of a vector.
  const std::string small = "--batch-tokens 64";
  const auto index = segmented("resume");
  ASSERT_EQ(run_kvrag(embed_args(index, small)).exit_code, 0);
  const auto reference = shard_bytes(index + "/embeddings");
  ASSERT_GT(reference.size(), 3u);

  // kill -9 in the middle: start, wait for the first file, kill.
  const std::string index2 = segmented("resume-killed");
  const std::string cmd = std::string(KVRAG_CLI_PATH) + " " + embed_args(index2, small) +
                          " >/dev/null 2>&1 & pid=$!; while ! ls " + index2 +
                          "/embeddings/*.npy >/dev/null 2>&1; do sleep 0.01; done; kill -9 $pid; "
                          "wait $pid 2>/dev/null; true";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const auto partial = shard_bytes(index2 + "/embeddings");
  RecordProperty("shards_before_resume", static_cast<int>(partial.size()));
  // never a torn file
  for (const auto& [name, bytes] : partial) EXPECT_EQ(bytes, reference.at(name)) << name;

  const auto r = run_kvrag(embed_args(index2, small));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  if (partial.size() < reference.size()) EXPECT_TRUE(contains(r.err, "already embedded")) << r.err;
  EXPECT_EQ(shard_bytes(index2 + "/embeddings"), reference);

  // Losing files (or a rerun with everything present) changes nothing either.
  fs::remove(index2 + "/embeddings/" + reference.rbegin()->first);
  fs::remove(index2 + "/embeddings/" + std::next(reference.begin())->first);
  ASSERT_EQ(run_kvrag(embed_args(index2, small)).exit_code, 0);
  EXPECT_EQ(shard_bytes(index2 + "/embeddings"), reference);
}

TEST_F(EmbedSearch, ShardsFromFlagsAndMpiTileTheCorpus) {
  const auto index = segmented("shards");
  auto a = run_kvrag(embed_args(index, "--shard 0/3"));
  ASSERT_EQ(a.exit_code, 0) << a.err;
  auto b = run_kvrag(embed_args(index), "", "OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=3 ");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_TRUE(contains(b.err, "MPI")) << b.err;
  const auto store = SegmentStore::open(index + "/segments.sqlite");
  // a third is missing
  EXPECT_THROW(EmbeddingSet::open(index + "/embeddings", store->size()), Error);
  auto c = run_kvrag(embed_args(index), "", "PMI_RANK=2 PMI_SIZE=3 ");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const auto set = EmbeddingSet::open(index + "/embeddings", store->size());
  EXPECT_EQ(set->size(), store->size());
  EXPECT_NE(run_kvrag(embed_args(index, "--shard 3/3")).exit_code, 0);
}

TEST_F(EmbedSearch, AnotherEncoderIsRefused) {
  const auto index = segmented("fingerprint");
  ASSERT_EQ(run_kvrag(embed_args(index)).exit_code, 0);
  ASSERT_EQ(run_kvrag("index build --index " + index + " --factory Flat").exit_code, 0);
  const std::string other = *root_ / "other-encoder";
  auto r = run_kvrag("embed --index " + index + " --encoder " + other + " --chunk 16");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "--overwrite")) << r.err;
  r = run_kvrag("search --index " + index + " --encoder " + other + " kaka");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "fingerprint")) << r.err;
  r = run_kvrag("search --index " + index + " -k 0 kaka");
  EXPECT_NE(r.exit_code, 0);
  r = run_kvrag("search --index " + (*root_ / "nowhere") + " kaka");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "nowhere")) << r.err;
  std::string long_question;
  for (int i = 0; i < 200; ++i) long_question += "kaka ";
  r = run_kvrag("search --index " + index + " '" + long_question + "'");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "tokens")) << r.err;
}

TEST_F(EmbedSearch, AShardChangedAfterEmbeddingIsRefusedAndReEmbedded) {
  const auto index = segmented("changed");
  ASSERT_EQ(run_kvrag(embed_args(index)).exit_code, 0);
  const auto reference = shard_bytes(index + "/embeddings");
  for (const auto& [name, bytes] : reference) {
    EXPECT_TRUE(fs::exists(index + "/embeddings/" + name + ".sum")) << name;
  }
  ASSERT_EQ(run_kvrag("index build --index " + index + " --factory Flat").exit_code, 0);

  // One byte of the vectors in the second shard (its header is 128 bytes), in place.
  const std::string shard = index + "/embeddings/" + std::next(reference.begin())->first;
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put(static_cast<char>(reference.at(std::next(reference.begin())->first)[200] ^ 0x10));
  }
  auto r = run_kvrag("index build --index " + index + " --factory Flat");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, shard + ": checksum mismatch in bytes [0, ")) << r.err;
  // Opening the retriever (re-ranking reads these vectors) refuses it too: a small set is
  // checked whole.
  r = run_kvrag("search --index " + index + " --mode dense -k 2 kaka");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, shard + ": checksum mismatch")) << r.err;
  RetrieverSpec dense;
  const std::string msg = test::error_of([&] { open_retriever(index, dense); });
  EXPECT_TRUE(contains(msg, shard + ": checksum mismatch")) << msg;
  RetrieverSpec bm25;  // BM25 alone reads no vectors
  bm25.mode = RetrieverMode::kBm25;
  EXPECT_EQ(open_retriever(index, bm25)->search({"kaka"}, 1).size(), 1u);

  // Rerunning the job embeds the changed shard again; everything works again.
  r = run_kvrag(embed_args(index));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, shard + ": checksum mismatch")) << r.err;
  EXPECT_TRUE(contains(r.err, "embedding it again")) << r.err;
  EXPECT_EQ(shard_bytes(index + "/embeddings"), reference);
  ASSERT_EQ(run_kvrag("index build --index " + index + " --factory Flat").exit_code, 0);
  r = run_kvrag("search --index " + index + " --mode dense -k 2 kaka");
  EXPECT_EQ(r.exit_code, 0) << r.err;

  // Shards from before checksums (no .sum) still load and build, with a note from the build.
  for (const auto& [name, bytes] : reference) fs::remove(index + "/embeddings/" + name + ".sum");
  r = run_kvrag("index build --index " + index + " --factory Flat");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "have no recorded checksum")) << r.err;
  r = run_kvrag("search --index " + index + " --mode dense -k 2 kaka");
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(EmbedSearch, AnEncoderWithAnotherVocabularyIsRefusedUnlessForced) {
  // The encoder's weights with one word of its vocabulary respelled: another tokenizer id.
  const std::string respelled = *root_ / "respelled";
  test::write_tiny_encoder(respelled, 1);
  std::string vocab = slurp(respelled + "/vocab.txt");
  vocab.replace(vocab.rfind("dandan"), 6, "dandon");
  std::ofstream(respelled + "/vocab.txt", std::ios::trunc) << vocab;

  const auto index = segmented("respelled");
  EmbedJobOptions o;
  o.chunk = 16;
  o.progress = false;
  const std::string msg = test::error_of([&] { embed_segments(index, respelled, o); });
  EXPECT_TRUE(contains(msg, index + ": segments were cut with tokenizer " + (*root_ / "encoder") +
                                "/vocab.txt (id vocab.txt#fnv1a64:"))
      << msg;
  EXPECT_TRUE(contains(msg, "but the encoder " + respelled + " uses " + respelled +
                                "/vocab.txt (id vocab.txt#fnv1a64:"))
      << msg;
  EXPECT_TRUE(contains(msg, "segment again with the encoder's tokenizer, or pass --force")) << msg;
  EXPECT_FALSE(fs::exists(index + "/embeddings"));
  auto r = run_kvrag("embed --index " + index + " --encoder " + respelled + " --chunk 16");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "pass --force to embed anyway")) << r.err;

  r = run_kvrag("embed --index " + index + " --encoder " + respelled + " --chunk 16 --force");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "embed: --force: " + index + ": segments were cut")) << r.err;
  o.force = true;
  EXPECT_GT(embed_segments(index, respelled, o).vectors, 0);

  // A store that recorded no tokenizer (made before kvrag recorded it) is not checked.
  const auto old = segmented("respelled-old");
  {
    const auto store = SegmentStore::open(old + "/segments.sqlite");
    auto segmenter = json::parse(store->meta("segmenter").value());
    EXPECT_EQ(segmenter["tokenizer_file"], *root_ / "encoder/vocab.txt");
    segmenter.erase("tokenizer");
    segmenter.erase("tokenizer_file");
    store->set_meta("segmenter", segmenter.dump());
  }
  o.force = false;
  EXPECT_GT(embed_segments(old, respelled, o).vectors, 0);
}

TEST_F(EmbedSearch, HybridAndBm25ModesAndEvaluation) {
  const auto index = segmented("modes");
  ASSERT_EQ(run_kvrag(embed_args(index)).exit_code, 0);
  ASSERT_EQ(run_kvrag("index build --index " + index + " --factory Flat").exit_code, 0);
  const auto store = SegmentStore::open(index + "/segments.sqlite");
  const auto target = store->get(7);
  // The segment's own text as the question: BM25 must rank it first (windows overlap, so a
  // few of its words alone would also match its neighbours).
  const std::string question = target.text;
  auto ranked = [&](const std::string& mode, int k) {
    const auto r = run_kvrag(
        "search --jsonl -k " + std::to_string(k) + " --index " + index + " --mode " + mode,
        json{{"question", question}}.dump() + "\n");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<int64_t> ids;
    const auto parsed = json::parse(r.out);
    for (const auto& hit : parsed["results"]) ids.push_back(hit["segment_id"].get<int64_t>());
    return ids;
  };
  const auto bm25 = ranked("bm25", 100);
  ASSERT_FALSE(bm25.empty());
  EXPECT_EQ(bm25[0], 7);
  // Hybrid = reciprocal-rank fusion (k = 60) of the top 100 of each: recompute it here.
  const auto dense = ranked("dense", 100);
  std::map<int64_t, double> fused;
  for (size_t i = 0; i < bm25.size(); ++i) fused[bm25[i]] += 1.0 / (60.0 + i + 1);
  for (size_t i = 0; i < dense.size(); ++i) fused[dense[i]] += 1.0 / (60.0 + i + 1);
  std::vector<std::pair<double, int64_t>> order;
  for (const auto& [id, score] : fused) order.push_back({-score, id});
  std::sort(order.begin(), order.end());
  const auto hybrid = ranked("hybrid", 3);
  ASSERT_EQ(hybrid.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(hybrid[i], order[i].second) << "rank " << i;
  const std::string questions = *root_ / "questions-modes.jsonl";
  std::ofstream(questions) << json{{"question", question},
                                   {"answers", {target.text.substr(0, 4)}},
                                   {"gold_passage_id", target.doc_id}}
                                  .dump()
                           << "\n";
  const auto r =
      run_kvrag("eval-retrieval --json --mode bm25 --index " + index + " --questions " + questions);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto report = json::parse(r.out);
  EXPECT_EQ(report["n"], 1);
  EXPECT_EQ(report["gold_in_top"]["1"], 1.0);
  for (const char* k : {"1", "5", "20", "100"})
    EXPECT_TRUE(report["answer_in_top"].contains(k)) << k;
}

}  // namespace
}  // namespace kvrag
