// Real-data check: the nq-oracle passages (2,600) segmented with bert-base-uncased, one segment
// per passage, then BM25 over the store on the dev and train questions. A standard BM25 finds
// the gold passage at rank 1 for ~75% of the questions, top 5 ~91%, top 20 ~95%
// (shared/README.md); the store must do at least about as well.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "index/retrieval_eval.h"
#include "index/retriever.h"
#include "index/segment_store.h"
#include "support/index_test_util.h"

namespace kvrag {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST(NqOracle, Bm25FindsTheGoldPassages) {
  KVRAG_SHARED_PATH_OR_SKIP(vocab, "tokenizers/bert-base-uncased/vocab.txt");
  KVRAG_SHARED_PATH_OR_SKIP(passages, "data/nq-oracle/passages.jsonl");
  KVRAG_SHARED_PATH_OR_SKIP(dev, "data/nq-oracle/questions-dev.jsonl");
  KVRAG_SHARED_PATH_OR_SKIP(train, "data/nq-oracle/questions-train.jsonl");
  test::TempDir dir;
  auto tk = WordPieceTokenizer::from_vocab_file(vocab);

  // The longest passage is 404 tokens as the encoder sees it ([CLS] title [SEP] text [SEP]): a
  // 512 window keeps every passage whole.
  SegmentBuildOptions opt;
  opt.segmenter.window = 512;
  opt.segmenter.stride = 64;
  opt.tokenizer_id = vocab;
  opt.strict = true;
  auto t0 = Clock::now();
  const auto built = build_segment_store(dir / "segments.sqlite", passages, *tk, opt);
  const double build_s = seconds_since(t0);
  ASSERT_TRUE(built.complete);
  EXPECT_EQ(built.stats.documents, 2600);
  EXPECT_EQ(built.stats.bad_lines, 0);
  EXPECT_EQ(built.segments, 2600) << "a passage was split into several segments";

  auto store = SegmentStore::open(dir / "segments.sqlite");
  for (int64_t id = 0; id < 2600; id += 97) EXPECT_EQ(store->get(id).doc_id, std::to_string(id));
  Bm25Retriever bm25(*store);
  std::printf("[ nq-oracle ] segmented 2,600 passages in %.2f s\n", build_s);
  for (const auto& [name, path] :
       {std::pair<std::string, std::string>{"dev", dev}, {"train", train}}) {
    const auto questions = read_questions(path);
    t0 = Clock::now();
    const RetrievalReport rep = evaluate_retrieval(bm25, *store, questions, {1, 5, 20, 100});
    const double eval_s = seconds_since(t0);
    std::printf("[ nq-oracle ] %s: %zu questions in %.2f s (%.2f ms/question)\n%s\n", name.c_str(),
                questions.size(), eval_s, 1000 * eval_s / questions.size(),
                rep.to_json().dump().c_str());
    EXPECT_EQ(rep.n_with_gold, static_cast<int64_t>(questions.size()));
    EXPECT_GE(rep.gold_in_top.at(1), 0.70) << name;
    EXPECT_GE(rep.gold_in_top.at(5), 0.87) << name;
    EXPECT_GE(rep.gold_in_top.at(20), 0.93) << name;
    // Every gold passage holds an answer, so answer recall is at least gold recall.
    EXPECT_GE(rep.answer_in_top.at(20), rep.gold_in_top.at(20)) << name;
  }
}

}  // namespace
}  // namespace kvrag
