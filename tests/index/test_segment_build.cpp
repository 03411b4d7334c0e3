// build_segment_store: a whole run, resume after an interruption (a stop between batches and a
// real kill in the middle of one), the up-to-date no-op, and refusing a different corpus.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "index/segment_store.h"
#include "support/index_test_util.h"

namespace kvrag {
namespace {

using nlohmann::json;
using test::TempDir;

// 60 documents of varying length (some several windows long) with 3 bad lines among them.
std::string make_corpus() {
  static const char* const kWords[] = {"the",     "cat",   "sat", "on",    "mat",
                                       "dog",     "ran",   "big", "red",   "ball",
                                       "running", "zebra", "zoo", "river", "paris"};
  std::string out;
  for (int d = 0; d < 60; ++d) {
    if (d == 10) out += "{\"id\": \"bad-json\", \"text\": \n";
    if (d == 33) out += "{\"id\": 99, \"title\": \"no text\"}\n";
    std::string text;
    const int n = 3 + (d * 37) % 70;
    for (int i = 0; i < n; ++i) text += std::string(i ? " " : "") + kWords[(d + i * i) % 15];
    out +=
        json{{"id", d}, {"title", d % 3 ? "History of Paris" : ""}, {"text", text}}.dump() + "\n";
  }
  out += "not json at the end\n";
  return out;
}

SegmentBuildOptions small_options() {
  SegmentBuildOptions o;
  o.segmenter.window = 24;
  o.segmenter.stride = 6;
  o.tokenizer_id = "tiny-vocab";
  o.batch_documents = 7;
  return o;
}

// Everything a store holds that a rerun must reproduce.
struct Dump {
  std::vector<Segment> segments;
  std::string progress, fingerprint, complete;
  std::vector<std::vector<ScoredSegment>> searches;
};

Dump dump(const std::string& path) {
  auto store = SegmentStore::open(path);
  Dump d;
  for (int64_t i = 0; i < store->size(); ++i) d.segments.push_back(store->get(i));
  d.progress = store->meta("progress").value_or("");
  d.fingerprint = store->meta("fingerprint").value_or("");
  d.complete = store->meta("complete").value_or("");
  for (const char* q : {"cat", "running zebra", "paris river", "history of the big red ball"}) {
    d.searches.push_back(store->bm25(q, 10));
  }
  return d;
}

void expect_same(const Dump& a, const Dump& b) {
  ASSERT_EQ(a.segments.size(), b.segments.size());
  for (size_t i = 0; i < a.segments.size(); ++i) EXPECT_EQ(a.segments[i], b.segments[i]) << i;
  EXPECT_EQ(a.progress, b.progress);
  EXPECT_EQ(a.fingerprint, b.fingerprint);
  EXPECT_EQ(a.complete, b.complete);
  EXPECT_EQ(a.searches, b.searches);
}

class SegmentBuild : public ::testing::Test {
 protected:
  void SetUp() override {
    tk_ = test::tiny_tokenizer(dir_);
    test::write_text(dir_ / "corpus.jsonl", make_corpus());
    corpus_ = dir_ / "corpus.jsonl";
  }
  TempDir dir_;
  std::unique_ptr<WordPieceTokenizer> tk_;
  std::string corpus_;
};

TEST_F(SegmentBuild, WholeRun) {
  std::vector<SegmentBuildProgress> seen;
  const auto r = build_segment_store(dir_ / "idx/segments.sqlite", corpus_, *tk_, small_options(),
                                     [&](const SegmentBuildProgress& p) { seen.push_back(p); });
  EXPECT_TRUE(r.complete);
  EXPECT_FALSE(r.up_to_date);
  EXPECT_FALSE(r.resumed);
  EXPECT_EQ(r.stats.documents, 60);
  EXPECT_EQ(r.stats.bad_lines, 3);
  ASSERT_EQ(r.stats.bad_examples.size(), 3u);
  EXPECT_EQ(r.stats.bad_examples[0].first, 11);
  EXPECT_EQ(r.stats.bad_examples[1].first, 35);
  EXPECT_EQ(r.stats.bad_examples[2].first, 63);
  EXPECT_GT(r.segments, 60);  // the long documents have several windows
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(std::string(seen.back().phase), "optimizing");
  EXPECT_EQ(seen.back().bytes_done, seen.back().bytes_total);
  EXPECT_EQ(seen.back().segments, r.segments);
  EXPECT_FALSE(seen.back().resumed);

  // Segments come in document order with dense ids; the store's meta describes the run.
  const Dump d = dump(dir_ / "idx/segments.sqlite");
  EXPECT_EQ(d.segments.front().doc_id, "0");
  EXPECT_EQ(d.segments.back().doc_id, "59");
  EXPECT_EQ(d.complete, "1");
  const json fp = json::parse(d.fingerprint);
  EXPECT_EQ(fp.at("window"), 24);
  EXPECT_EQ(fp.at("stride"), 6);
  EXPECT_EQ(fp.at("tokenizer"), "tiny-vocab");
  EXPECT_EQ(fp.at("format"), "jsonl");
  auto store = SegmentStore::open(dir_ / "idx/segments.sqlite");
  EXPECT_EQ(json::parse(*store->meta("segmenter")).at("prepend_title"), true);
}

TEST_F(SegmentBuild, ResumeAfterStoppingBetweenBatches) {
  auto single = small_options();
  single.threads = 1;
  build_segment_store(dir_ / "full.sqlite", corpus_, *tk_, single);

  auto opt = small_options();
  opt.threads = 3;  // the store does not depend on the thread count
  opt.max_batches = 3;
  auto r = build_segment_store(dir_ / "part.sqlite", corpus_, *tk_, opt);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.stats.documents, 21);
  {
    auto store = SegmentStore::open(dir_ / "part.sqlite");
    EXPECT_FALSE(store->meta("complete").has_value());
    EXPECT_EQ(json::parse(*store->meta("progress")).at("documents"), 21);
  }
  opt.max_batches = 2;  // resume twice
  r = build_segment_store(dir_ / "part.sqlite", corpus_, *tk_, opt);
  EXPECT_TRUE(r.resumed);
  EXPECT_FALSE(r.complete);
  EXPECT_EQ(r.stats.documents, 35);
  opt.max_batches = 0;
  r = build_segment_store(dir_ / "part.sqlite", corpus_, *tk_, opt);
  EXPECT_TRUE(r.resumed);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.stats.documents, 60);
  EXPECT_EQ(r.stats.bad_lines, 3);
  EXPECT_EQ(r.stats.bad_examples.size(), 3u);
  expect_same(dump(dir_ / "full.sqlite"), dump(dir_ / "part.sqlite"));
}

TEST_F(SegmentBuild, ResumeAfterAKillInsideABatch) {
  build_segment_store(dir_ / "full.sqlite", corpus_, *tk_, small_options());
  // The child process (a fork) dies without destructors or a commit in the middle of its fifth
  // batch. It segments on one thread: OpenMP's thread pool does not survive a fork.
  const std::string path = dir_ / "killed.sqlite";
  auto child = small_options();
  child.threads = 1;
  EXPECT_EXIT(
      {
        build_segment_store(path, corpus_, *tk_, child, [](const SegmentBuildProgress& p) {
          if (p.documents == 31) std::_Exit(9);
        });
      },
      ::testing::ExitedWithCode(9), "");
  {
    auto store = SegmentStore::open(path);
    EXPECT_EQ(json::parse(*store->meta("progress")).at("documents"), 28);  // 4 batches of 7
  }
  const auto r = build_segment_store(path, corpus_, *tk_, small_options());
  EXPECT_TRUE(r.resumed);
  EXPECT_TRUE(r.complete);
  expect_same(dump(dir_ / "full.sqlite"), dump(path));
}

TEST_F(SegmentBuild, ACorpusWithoutDocumentsIsAnErrorUnlessAllowed) {
  const std::string path = dir_ / "idx/segments.sqlite";
  test::write_text(dir_ / "empty.jsonl", "");
  const std::string want = "corpus " + (dir_ / "empty.jsonl") +
                           ": no documents (the file is empty); pass --allow-empty to accept";
  EXPECT_EQ(test::error_of(
                [&] { build_segment_store(path, dir_ / "empty.jsonl", *tk_, small_options()); }),
            want);
  EXPECT_FALSE(std::filesystem::exists(path)) << "no store is made for an empty corpus";
  // Only bad lines: the reason names the first.
  test::write_text(dir_ / "bad.jsonl", "\n{\"id\": 1}\nnot json\n");
  EXPECT_KVRAG_ERROR(build_segment_store(path, dir_ / "bad.jsonl", *tk_, small_options()),
                     "bad.jsonl: no documents (all 2 document lines are bad; the first, line 2: "
                     "missing \"text\")",
                     "--allow-empty");
  EXPECT_FALSE(std::filesystem::exists(path));

  auto opt = small_options();
  opt.allow_empty = true;
  const auto r = build_segment_store(path, dir_ / "empty.jsonl", *tk_, opt);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.segments, 0);
  EXPECT_EQ(r.stats.documents, 0);
  EXPECT_TRUE(build_segment_store(path, dir_ / "empty.jsonl", *tk_, opt).up_to_date);
  // The finished empty store is still refused without allow_empty.
  EXPECT_KVRAG_ERROR(build_segment_store(path, dir_ / "empty.jsonl", *tk_, small_options()),
                     "no documents (the file is empty)");
}

TEST_F(SegmentBuild, UpToDateAndMismatches) {
  const std::string path = dir_ / "s.sqlite";
  const auto first = build_segment_store(path, corpus_, *tk_, small_options());
  const auto again = build_segment_store(path, corpus_, *tk_, small_options());
  EXPECT_TRUE(again.up_to_date);
  EXPECT_TRUE(again.complete);
  EXPECT_EQ(again.segments, first.segments);
  EXPECT_EQ(again.stats.bad_lines, 3);
  // Batch size and strictness are not part of the fingerprint.
  auto opt = small_options();
  opt.batch_documents = 100;
  EXPECT_TRUE(build_segment_store(path, corpus_, *tk_, opt).up_to_date);

  opt = small_options();
  opt.segmenter.window = 32;
  EXPECT_KVRAG_ERROR(build_segment_store(path, corpus_, *tk_, opt), "s.sqlite",
                     "different corpus or with different options", "window: 24 → 32",
                     "--overwrite");
  // A changed corpus file (size and mtime) is a different corpus.
  test::write_text(dir_ / "corpus.jsonl", make_corpus() + "{\"id\": 1000, \"text\": \"cat\"}\n");
  EXPECT_KVRAG_ERROR(build_segment_store(path, corpus_, *tk_, small_options()), "corpus_size");
  // --overwrite rebuilds.
  opt = small_options();
  opt.overwrite = true;
  const auto rebuilt = build_segment_store(path, corpus_, *tk_, opt);
  EXPECT_TRUE(rebuilt.complete);
  EXPECT_FALSE(rebuilt.resumed);
  EXPECT_EQ(rebuilt.stats.documents, 61);
}

TEST_F(SegmentBuild, StrictStopsAtTheFirstBadLine) {
  auto opt = small_options();
  opt.strict = true;
  EXPECT_KVRAG_ERROR(build_segment_store(dir_ / "s.sqlite", corpus_, *tk_, opt), "corpus.jsonl",
                     "line 11", "invalid JSON");
  // The batch before the bad line is committed: a non-strict rerun continues from there.
  const auto r = build_segment_store(dir_ / "s.sqlite", corpus_, *tk_, small_options());
  EXPECT_TRUE(r.resumed);
  EXPECT_EQ(r.resumed_at_line, 7);
  EXPECT_TRUE(r.complete);
}

TEST_F(SegmentBuild, RejectsOptionsAndForeignStores) {
  auto opt = small_options();
  opt.batch_documents = 0;
  EXPECT_KVRAG_ERROR(build_segment_store(dir_ / "s.sqlite", corpus_, *tk_, opt), "batch");
  opt = small_options();
  opt.segmenter.stride = 30;
  EXPECT_KVRAG_ERROR(build_segment_store(dir_ / "s.sqlite", corpus_, *tk_, opt), "stride");
  EXPECT_KVRAG_ERROR(
      build_segment_store(dir_ / "s.sqlite", dir_ / "none.jsonl", *tk_, small_options()),
      "none.jsonl", "cannot open");
  // A store filled by hand has no fingerprint.
  {
    auto store = SegmentStore::open(dir_ / "hand.sqlite", true);
    std::vector<Segment> segs(1);
    segs[0].doc_id = "x";
    segs[0].text = "x";
    store->add_segments(segs);
  }
  EXPECT_KVRAG_ERROR(build_segment_store(dir_ / "hand.sqlite", corpus_, *tk_, small_options()),
                     "no corpus fingerprint");
}

}  // namespace
}  // namespace kvrag
