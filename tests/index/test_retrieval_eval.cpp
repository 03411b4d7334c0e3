// Retrieval evaluation: reading questions, top-k counting, the JSON and Markdown reports, and
// the BM25 and reciprocal-rank-fusion retrievers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "index/retrieval_eval.h"
#include "index/retriever.h"
#include "support/index_test_util.h"

namespace kvrag {
namespace {

using nlohmann::json;
using test::TempDir;

// Returns fixed result lists, one per question in order of the questions it has seen.
using Lists = std::vector<std::vector<int64_t>>;

class FixedRetriever final : public Retriever {
 public:
  explicit FixedRetriever(std::vector<std::vector<int64_t>> lists) : lists_(std::move(lists)) {}
  std::vector<std::vector<ScoredSegment>> search(const std::vector<std::string>& questions,
                                                 int k) override {
    std::vector<std::vector<ScoredSegment>> out;
    for (size_t i = 0; i < questions.size(); ++i) {
      const auto& l = lists_.at(next_++);
      std::vector<ScoredSegment> r;
      for (size_t j = 0; j < l.size() && static_cast<int>(j) < k; ++j) {
        r.push_back({l[j], 1.0 / (j + 1)});
      }
      out.push_back(r);
    }
    return out;
  }

 private:
  std::vector<std::vector<int64_t>> lists_;
  size_t next_ = 0;
};

Segment seg(const std::string& doc, const std::string& text) {
  Segment s;
  s.doc_id = doc;
  s.text = text;
  return s;
}

TEST(RetrievalEval, ReadQuestions) {
  TempDir dir;
  test::write_text(
      dir / "q.jsonl",
      "{\"question\": \"who?\", \"answers\": [\"A\", \"B\"], \"gold_passage_id\": "
      "17}\n\n{\"question\": \"what?\", \"gold_passage_id\": \"doc-3\"}\n{\"question\": \"when?\", "
      "\"answers\": [], \"gold_passage_id\": null}\n");
  const auto qs = read_questions(dir / "q.jsonl");
  ASSERT_EQ(qs.size(), 3u);
  EXPECT_EQ(qs[0].question, "who?");
  EXPECT_EQ(qs[0].answers, (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(qs[0].gold_passage_id, "17");
  EXPECT_EQ(qs[1].gold_passage_id, "doc-3");
  EXPECT_TRUE(qs[1].answers.empty());
  EXPECT_EQ(qs[2].gold_passage_id, "");

  test::write_text(dir / "bad.jsonl", "{\"question\": \"ok\"}\n{\"answers\": [\"x\"]}\n");
  EXPECT_KVRAG_ERROR(read_questions(dir / "bad.jsonl"), "bad.jsonl", "line 2", "question");
  test::write_text(dir / "bad2.jsonl", "{\"question\": \"ok\", \"answers\": [1]}\n");
  EXPECT_KVRAG_ERROR(read_questions(dir / "bad2.jsonl"), "bad2.jsonl", "line 1", "non-string");
  test::write_text(dir / "bad3.jsonl", "{\"question\": \"ok\"\n");
  EXPECT_KVRAG_ERROR(read_questions(dir / "bad3.jsonl"), "bad3.jsonl", "line 1", "invalid JSON");
  EXPECT_KVRAG_ERROR(read_questions(dir / "none.jsonl"), "none.jsonl", "cannot open");
}

TEST(RetrievalEval, AQuestionsFileWithoutQuestionsIsAnErrorUnlessAllowed) {
  TempDir dir;
  test::write_text(dir / "empty.jsonl", "");
  test::write_text(dir / "blank.jsonl", "\n  \n\r\n");
  const std::string empty = "questions " + (dir / "empty.jsonl") +
                            ": no questions (the file is empty); pass --allow-empty to accept";
  const std::string blank =
      "questions " + (dir / "blank.jsonl") + ": no questions (the file has only blank lines)";
  EXPECT_EQ(test::error_of([&] { read_questions(dir / "empty.jsonl"); }), empty);
  EXPECT_KVRAG_ERROR(read_questions(dir / "blank.jsonl"), blank.c_str(), "--allow-empty");
  EXPECT_TRUE(read_questions(dir / "empty.jsonl", /*allow_empty=*/true).empty());
  EXPECT_TRUE(read_questions(dir / "blank.jsonl", /*allow_empty=*/true).empty());
}

TEST(RetrievalEval, CountsAndReports) {
  TempDir dir;
  auto store = SegmentStore::open(dir / "s.sqlite", true);
  std::vector<Segment> segs = {
      seg("10", "Paris is the capital of France."), seg("11", "Lyon is on the Rhône."),
      seg("12", "The capital of Italy is Rome."), seg("13", "Berlin, Germany.")};
  store->add_segments(segs);
  const std::vector<Question> qs = {
      {"capital of france", {"Paris"}, "10"},  // answer and gold at rank 1
      {"capital of italy", {"Rome"}, "12"},    // answer and gold at rank 3
      {"german capital", {"Munich"}, "13"},    // gold at rank 2, answer never
      {"no gold", {"Rhône"}, ""},              // answer at rank 2
  };
  FixedRetriever r(Lists{{0, 1, 2}, {1, 3, 2}, {0, 3}, {2, 1}});
  const RetrievalReport rep = evaluate_retrieval(r, *store, qs, {1, 2, 3}, /*batch=*/3);
  EXPECT_EQ(rep.n, 4);
  EXPECT_EQ(rep.n_with_gold, 3);
  EXPECT_DOUBLE_EQ(rep.answer_in_top.at(1), 0.25);
  EXPECT_DOUBLE_EQ(rep.answer_in_top.at(2), 0.5);
  EXPECT_DOUBLE_EQ(rep.answer_in_top.at(3), 0.75);
  EXPECT_DOUBLE_EQ(rep.gold_in_top.at(1), 1.0 / 3);
  EXPECT_DOUBLE_EQ(rep.gold_in_top.at(2), 2.0 / 3);
  EXPECT_DOUBLE_EQ(rep.gold_in_top.at(3), 1.0);

  const json j = rep.to_json();
  EXPECT_EQ(j.size(), 3u);
  EXPECT_EQ(j.at("n"), 4);
  EXPECT_EQ(j.at("answer_in_top").size(), 3u);
  EXPECT_DOUBLE_EQ(j.at("answer_in_top").at("2").get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j.at("gold_in_top").at("3").get<double>(), 1.0);
  const std::string md = rep.to_markdown();
  EXPECT_NE(md.find("| k | answer in top-k | gold in top-k |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 2 | 50.0% | 66.7% |"), std::string::npos) << md;

  // Without gold ids there is no "gold_in_top".
  FixedRetriever r2(Lists{{0}});
  const RetrievalReport no_gold = evaluate_retrieval(r2, *store, {{"q", {"paris"}, ""}}, {1, 100});
  const json j2 = no_gold.to_json();
  EXPECT_EQ(j2, json::parse(R"({"n": 1, "answer_in_top": {"1": 1.0, "100": 1.0}})"));
  EXPECT_EQ(no_gold.to_markdown().find("gold"), std::string::npos);

  FixedRetriever r3(Lists{});
  EXPECT_KVRAG_ERROR(evaluate_retrieval(r3, *store, qs, {}), "no k");
  EXPECT_KVRAG_ERROR(evaluate_retrieval(r3, *store, qs, {0}), "k must be positive");
}

TEST(Retrievers, Bm25AndReciprocalRankFusion) {
  TempDir dir;
  auto store = SegmentStore::open(dir / "s.sqlite", true);
  std::vector<Segment> segs = {seg("a", "zebra zebra zoo"), seg("b", "zebra"), seg("c", "zoo")};
  store->add_segments(segs);
  Bm25Retriever bm25(*store);
  const auto res = bm25.search({"zebra", "zoo keeper", "nothing"}, 5);
  ASSERT_EQ(res.size(), 3u);
  ASSERT_EQ(res[0].size(), 2u);
  EXPECT_EQ(res[1].size(), 2u);
  EXPECT_TRUE(res[2].empty());

  // a: ranks 1 and 3 → 1/61 + 1/63; b: ranks 2 and 1 → 1/62 + 1/61 (best); c: rank 2 → 1/62;
  // d: rank 3 in a only.
  FixedRetriever x(Lists{{0, 1, 3}}), y(Lists{{1, 2, 0}});
  HybridRetriever hybrid(x, y, /*depth=*/10, /*rrf_k=*/60);
  const auto fused = hybrid.search({"q"}, 3);
  ASSERT_EQ(fused.size(), 1u);
  ASSERT_EQ(fused[0].size(), 3u);
  EXPECT_EQ(fused[0][0].id, 1);
  EXPECT_EQ(fused[0][1].id, 0);
  EXPECT_EQ(fused[0][2].id, 2);  // 1/62 beats d's 1/63
  EXPECT_DOUBLE_EQ(fused[0][0].score, 1.0 / 62 + 1.0 / 61);
  EXPECT_DOUBLE_EQ(fused[0][2].score, 1.0 / 62);
}

}  // namespace
}  // namespace kvrag
