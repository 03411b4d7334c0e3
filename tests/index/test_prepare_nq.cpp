// prepare_nq: Natural Questions (simplified) → corpus, gold passages and question files that the
// corpus reader and the question reader accept; skips by reason; gzip input; the split.
#include "index/prepare_nq.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/atomic_file.h"
#include "index/retrieval_eval.h"
#include "support/index_test_util.h"
#include "text/corpus_reader.h"

namespace kvrag {
namespace {

using nlohmann::json;
using test::TempDir;
using test::write_text;

struct Span {
  int begin, end;
};

// One line of the simplified format. `long_answer` {-1, -1}: none.
std::string nq_line(const json& example_id, const std::string& question, const std::string& url,
                    const std::vector<std::string>& tokens, Span long_answer,
                    const std::vector<Span>& short_answers = {},
                    const std::string& yes_no = "NONE") {
  std::string text;
  for (const auto& t : tokens) text += (text.empty() ? "" : " ") + t;
  json shorts = json::array();
  for (const Span& s : short_answers)
    shorts.push_back({{"start_token", s.begin}, {"end_token", s.end}});
  const json la = {{"start_token", long_answer.begin},
                   {"end_token", long_answer.end},
                   {"candidate_index", long_answer.begin < 0 ? -1 : 0}};
  const json j = {
      {"example_id", example_id},
      {"question_text", question},
      {"document_url", url},
      {"document_text", text},
      {"long_answer_candidates",
       json::array({{{"start_token", 0}, {"end_token", 1}, {"top_level", true}}})},
      {"annotations",
       json::array({{{"long_answer", la}, {"short_answers", shorts}, {"yes_no_answer", yes_no}}})}};
  return j.dump() + "\n";
}

const std::string kUrlA = "https://en.wikipedia.org//w/index.php?title=Cat_Mat&amp;oldid=1";
const std::vector<std::string> kDocA = {"<H1>", "Cat", "Mat", "</H1>", "<P>", "The", "cat",
                                        "sat",  "on",  "the", "mat",   ".",   "</P>"};

// Seven lines: three kept (two on one document), one of each skip reason.
std::string small_file() {
  return nq_line(1001, "where did the cat sit", kUrlA, kDocA, {4, 13}, {{9, 11}}) +
         nq_line(1002, "did the cat sit", kUrlA, kDocA, {4, 13}, {}, "YES") +
         nq_line(1003, "who has no long answer", "https://en.wikipedia.org/wiki/Nothing",
                 {"<P>", "nothing", "</P>"}, {-1, -1}) +
         "{\"example_id\": 1004, \"question_text\": \n" +  // malformed
         "\n" +                                            // blank: ignored
         nq_line(1005, "out of range", "https://en.wikipedia.org/wiki/Range",
                 {"<Table>", "<Tr>", "<Td>", "x", "</Td>", "</Tr>", "</Table>"}, {0, 99}) +
         nq_line(1006, "  ", "https://en.wikipedia.org/wiki/Empty", {"<P>", "y", "</P>"}, {0, 3}) +
         nq_line("1007", "is it au lait", "https://en.wikipedia.org/wiki/Caf%C3%A9_au_lait",
                 {"<P>", "Coffee", "with", "<b>", "milk", "</b>", "</P>"}, {0, 7}, {}, "NO");
}

std::vector<Document> read_corpus(const std::string& path) {
  CorpusReader reader(path);
  std::vector<Document> docs;
  for (Document d; reader.next(d);) docs.push_back(d);
  EXPECT_EQ(reader.stats().bad_lines, 0) << path;
  return docs;
}

PrepareNqOptions quiet(double train_fraction = 0.95, uint64_t seed = 0) {
  PrepareNqOptions o;
  o.train_fraction = train_fraction;
  o.seed = seed;
  o.progress = false;
  return o;
}

TEST(PrepareNq, WritesACorpusPassagesAndQuestionsTheReadersAccept) {
  TempDir dir;
  write_text(dir / "nq.jsonl", small_file());
  const PrepareNqResult r = prepare_nq(dir / "nq.jsonl", dir / "out", quiet(1.0));

  EXPECT_EQ(r.lines, 8);
  EXPECT_EQ(r.train, 3);
  EXPECT_EQ(r.dev, 0);
  EXPECT_EQ(r.documents, 2);
  EXPECT_EQ(r.passages, 2);
  EXPECT_EQ(r.without_answers, 0);
  EXPECT_EQ(
      r.skipped,
      (std::map<std::string, int64_t>{
          {"malformed line", 1}, {"no long answer", 1}, {"bad span", 1}, {"empty question", 1}}));
  EXPECT_EQ(r.total_skipped(), 4);
  EXPECT_EQ(r.first_malformed_line, 4);
  EXPECT_EQ(r.first_malformed_reason, "invalid JSON");

  // The corpus: one document per URL, tags stripped, titles from the URL.
  const auto docs = read_corpus(r.corpus_path);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].id, "0");
  EXPECT_EQ(docs[0].title, "Cat Mat");
  EXPECT_EQ(docs[0].text, "Cat Mat The cat sat on the mat .");
  EXPECT_EQ(docs[1].id, "1");
  EXPECT_EQ(docs[1].title, "Caf\xC3\xA9 au lait");
  EXPECT_EQ(docs[1].text, "Coffee with milk");

  // The gold passages: the long answers, one per distinct span.
  const auto passages = read_corpus(r.passages_path);
  ASSERT_EQ(passages.size(), 2u);
  EXPECT_EQ(passages[0].id, "0:4-13");
  EXPECT_EQ(passages[0].title, "Cat Mat");
  EXPECT_EQ(passages[0].text, "The cat sat on the mat .");
  EXPECT_EQ(passages[1].id, "1:0-7");

  const auto train = read_questions(r.train_path);
  ASSERT_EQ(train.size(), 3u);
  EXPECT_EQ(train[0].question, "where did the cat sit");
  EXPECT_EQ(train[0].answers, std::vector<std::string>{"the mat"});
  EXPECT_EQ(train[0].gold_passage_id, "0:4-13");
  EXPECT_EQ(train[1].answers, std::vector<std::string>{"yes"});
  EXPECT_EQ(train[1].gold_passage_id, "0:4-13");
  EXPECT_EQ(train[2].answers, std::vector<std::string>{"no"});
  EXPECT_EQ(train[2].gold_passage_id, "1:0-7");
  EXPECT_TRUE(read_questions(r.dev_path, /*allow_empty=*/true).empty());

  // Every gold id names a passage (what train-retriever and train-prefix --oracle look up).
  std::set<std::string> ids;
  for (const auto& p : passages) ids.insert(p.id);
  for (const auto& q : train) EXPECT_TRUE(ids.count(q.gold_passage_id)) << q.gold_passage_id;

  // The extra fields ride along.
  std::ifstream in(r.train_path);
  std::string first;
  std::getline(in, first);
  const json q = json::parse(first);
  EXPECT_EQ(q["document_id"], 0);
  EXPECT_EQ(q["example_id"], "1001");
}

void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// 200 examples with distinct ids, two URLs each shared by many.
std::string many_examples() {
  std::string s;
  for (int i = 0; i < 200; ++i) {
    s += nq_line(5000000000000000000ull + static_cast<uint64_t>(i) * 7919,
                 "question " + std::to_string(i),
                 "https://en.wikipedia.org/wiki/Doc_" + std::to_string(i % 13),
                 {"<P>", "word", std::to_string(i), "</P>"}, {0, 4}, {{2, 3}});
  }
  return s;
}

TEST(PrepareNq, GzipInputGivesTheSameFiles) {
  TempDir dir;
  const std::string text = small_file() + many_examples();
  write_text(dir / "nq.jsonl", text);
  write_gzip(dir / "nq.jsonl.gz", text);
  const auto plain = prepare_nq(dir / "nq.jsonl", dir / "plain", quiet());
  const auto gz = prepare_nq(dir / "nq.jsonl.gz", dir / "gz", quiet());
  EXPECT_EQ(plain.train, gz.train);
  EXPECT_EQ(plain.dev, gz.dev);
  EXPECT_EQ(plain.skipped, gz.skipped);
  EXPECT_EQ(plain.first_malformed_line, gz.first_malformed_line);
  EXPECT_GT(plain.dev, 0);
  for (const char* f :
       {"corpus.jsonl", "passages.jsonl", "questions-train.jsonl", "questions-dev.jsonl"}) {
    EXPECT_EQ(read_file(dir / "plain/" + f), read_file(dir / "gz/" + f)) << f;
  }
}

TEST(PrepareNq, SplitIsDeterministicAndNearItsFraction) {
  TempDir dir;
  write_text(dir / "nq.jsonl", many_examples());
  const auto a = prepare_nq(dir / "nq.jsonl", dir / "a", quiet(0.95, 7));
  const auto b = prepare_nq(dir / "nq.jsonl", dir / "b", quiet(0.95, 7));
  const auto c = prepare_nq(dir / "nq.jsonl", dir / "c", quiet(0.95, 8));
  EXPECT_EQ(a.train + a.dev, 200);
  EXPECT_EQ(a.documents, 13);
  EXPECT_EQ(read_file(dir / "a/questions-dev.jsonl"), read_file(dir / "b/questions-dev.jsonl"));
  EXPECT_EQ(read_file(dir / "a/questions-train.jsonl"), read_file(dir / "b/questions-train.jsonl"));
  EXPECT_NE(read_file(dir / "a/questions-dev.jsonl"), read_file(dir / "c/questions-dev.jsonl"));
  EXPECT_GE(a.dev, 2);  // 10 expected; loose bounds
  EXPECT_LE(a.dev, 25);
  EXPECT_EQ(static_cast<int64_t>(read_questions(dir / "a/questions-dev.jsonl").size()), a.dev);
  // The split of an example depends on its id and the seed only.
  EXPECT_EQ(nq_is_dev("123", 7, 0.95), nq_is_dev("123", 7, 0.95));
  EXPECT_FALSE(nq_is_dev("123", 7, 1.0));
  const auto all_train = prepare_nq(dir / "nq.jsonl", dir / "d", quiet(1.0, 7));
  EXPECT_EQ(all_train.dev, 0);
}

TEST(PrepareNq, TitleFromUrl) {
  EXPECT_EQ(
      nq_title_from_url("https://en.wikipedia.org//w/index.php?title=Some_Title&amp;oldid=123"),
      "Some Title");
  EXPECT_EQ(nq_title_from_url("https://en.wikipedia.org/w/index.php?oldid=5&title=A%26B_(band)"),
            "A&B (band)");
  EXPECT_EQ(nq_title_from_url("https://en.wikipedia.org/wiki/Caf%C3%A9_au_lait"),
            "Caf\xC3\xA9 au lait");
  EXPECT_EQ(nq_title_from_url("https://en.wikipedia.org/wiki/100%_(song)#Charts"), "100% (song)");
  EXPECT_EQ(nq_title_from_url("https://example.org/pages/Other_Page/"), "Other Page");
  EXPECT_EQ(nq_title_from_url("no-slash"), "no-slash");
  EXPECT_TRUE(nq_is_tag("<P>"));
  EXPECT_TRUE(nq_is_tag("</Td>"));
  EXPECT_FALSE(nq_is_tag("<"));
  EXPECT_FALSE(nq_is_tag("a<b>"));
}

TEST(PrepareNq, ErrorsNameTheFileAndLeaveNoOutput) {
  TempDir dir;
  EXPECT_KVRAG_ERROR(prepare_nq(dir / "missing.jsonl", dir / "out", quiet()), "missing.jsonl",
                     "cannot open");
  write_text(dir / "bad.jsonl", "not json\n[1]\n{\"example_id\": 1}\n");
  EXPECT_KVRAG_ERROR(prepare_nq(dir / "bad.jsonl", dir / "out", quiet()), "bad.jsonl",
                     "no valid example", "line 1");
  write_text(dir / "empty.jsonl", "");
  EXPECT_KVRAG_ERROR(prepare_nq(dir / "empty.jsonl", dir / "out", quiet()), "empty.jsonl", "empty");
  EXPECT_FALSE(std::filesystem::exists(dir / "out/corpus.jsonl"));
  EXPECT_FALSE(std::filesystem::exists(dir / "out/questions-train.jsonl"));
  EXPECT_TRUE(std::filesystem::is_empty(dir / "out"));  // no temporary files left either

  // A gzip file cut short is an error, not a short conversion.
  std::string text = many_examples();
  write_gzip(dir / "cut.jsonl.gz", text);
  const std::string gz = read_file(dir / "cut.jsonl.gz");
  write_text(dir / "cut.jsonl.gz", gz.substr(0, gz.size() / 2));
  EXPECT_KVRAG_ERROR(prepare_nq(dir / "cut.jsonl.gz", dir / "cut", quiet()), "cut.jsonl.gz",
                     "truncated");
  EXPECT_KVRAG_ERROR(prepare_nq(dir / "nq.jsonl", dir / "out", quiet(0.0)), "train fraction");
}

}  // namespace
}  // namespace kvrag
