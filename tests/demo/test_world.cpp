// The demo world: deterministic, answerable from its documents, and split so that nothing of a
// train or held-out entity reaches the LLM's pre-training text.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "demo/world.h"
#include "support/test_support.h"
#include "train/lm_trainer.h"

namespace kvrag {
namespace {

WorldOptions small_world() {
  WorldOptions o;
  o.seed = 7;
  o.people = 200;
  o.organisations = 50;
  o.inventions = 50;
  o.cities = 30;
  o.countries = 6;
  o.train_fraction = 0.25;
  o.heldout_fraction = 0.3;
  o.reading_fraction = 0.2;
  o.dev_questions = 20;
  o.max_test_questions = 60;
  return o;
}

TEST(World, IsAFunctionOfItsOptions) {
  const World a = generate_world(small_world());
  const World b = generate_world(small_world());
  ASSERT_EQ(a.documents.size(), b.documents.size());
  for (size_t i = 0; i < a.documents.size(); ++i)
    EXPECT_EQ(a.documents[i].text, b.documents[i].text);
  EXPECT_EQ(a.lm_examples, b.lm_examples);
  ASSERT_EQ(a.test_questions.size(), b.test_questions.size());
  for (size_t i = 0; i < a.test_questions.size(); ++i)
    EXPECT_EQ(a.test_questions[i].question, b.test_questions[i].question);

  WorldOptions other = small_world();
  other.seed = 8;
  EXPECT_NE(generate_world(other).documents[100].text, a.documents[100].text);
}

TEST(World, NamesAreUniqueAndQuestionsAreAnsweredByTheirGoldDocument) {
  const World w = generate_world(small_world());
  std::set<std::string> names;
  std::map<std::string, const WorldDocument*> docs;
  for (const auto& e : w.entities) EXPECT_TRUE(names.insert(e.name).second) << e.name;
  for (const auto& d : w.documents) docs[d.id] = &d;
  EXPECT_EQ(w.dev_questions.size(), 20u);
  EXPECT_EQ(w.test_questions.size(), 60u);
  std::set<std::string> attributes, phrasings;
  for (const auto* set : {&w.lm_questions, &w.reading_questions, &w.train_questions,
                          &w.dev_questions, &w.test_questions}) {
    for (const auto& q : *set) {
      ASSERT_TRUE(docs.count(q.gold_passage_id)) << q.gold_passage_id;
      EXPECT_NE(docs[q.gold_passage_id]->text.find(q.answer), std::string::npos) << q.question;
      EXPECT_NE(q.question.find(docs[q.gold_passage_id]->title), std::string::npos) << q.question;
      EXPECT_FALSE(q.answer.empty());
      attributes.insert(q.attribute);
      phrasings.insert(q.question.substr(0, 8));
    }
  }
  EXPECT_GE(attributes.size(), 8u);
  EXPECT_GE(phrasings.size(), 15u);  // varied phrasings, not one template per attribute
}

TEST(World, HeldOutAndTrainEntitiesNeverReachThePretrainingText) {
  const World w = generate_world(small_world());
  std::map<std::string, WorldSplit> split_of;
  int held = 0, train = 0, reading = 0;
  for (const auto& e : w.entities) {
    split_of[e.id] = e.split;
    held += e.split == WorldSplit::kHeldout;
    train += e.split == WorldSplit::kTrain;
    reading += e.split == WorldSplit::kReading;
  }
  EXPECT_GT(held, 50);
  EXPECT_GT(train, 50);
  EXPECT_GT(reading, 30);
  std::string lm;
  for (const auto& ex : w.lm_examples) {
    EXPECT_EQ(ex.find("\n\n"), std::string::npos);
    lm += ex + "\n";
  }
  std::set<std::string> closed_book;  // questions asked without a context
  for (const auto& ex : w.lm_examples) {
    if (ex.rfind("Question: ", 0) == 0) closed_book.insert(ex);
  }
  for (const auto& e : w.entities) {
    if (e.split == WorldSplit::kTrain || e.split == WorldSplit::kHeldout) {
      EXPECT_EQ(lm.find(e.name), std::string::npos) << e.name << " is in lm.txt";
    }
    if (e.split == WorldSplit::kReading) {
      // Reading entities appear, but only inside contexts: never asked about closed-book.
      EXPECT_NE(lm.find(e.name), std::string::npos) << e.name;
      for (const auto& ex : closed_book) EXPECT_EQ(ex.find(e.name), std::string::npos) << ex;
    }
  }
  for (const auto& q : w.dev_questions)
    EXPECT_EQ(split_of[q.gold_passage_id], WorldSplit::kHeldout);
  for (const auto& q : w.test_questions)
    EXPECT_EQ(split_of[q.gold_passage_id], WorldSplit::kHeldout);
  for (const auto& q : w.train_questions)
    EXPECT_EQ(split_of[q.gold_passage_id], WorldSplit::kTrain);
  // lm.txt teaches the answer format: closed-book and in-context question/answer pairs.
  EXPECT_NE(lm.find("Question: "), std::string::npos);
  EXPECT_NE(lm.find("\nAnswer: "), std::string::npos);
  EXPECT_NE(lm.find("Context: "), std::string::npos);
}

TEST(World, FilesRoundTrip) {
  test::TempDir dir;
  const World w = generate_world(small_world());
  write_world(w, dir.path());
  EXPECT_EQ(read_lm_examples(dir / "lm.txt"), w.lm_examples);
  std::ifstream corpus(dir / "corpus.jsonl");
  std::string line;
  std::vector<const WorldDocument*> expected;  // the corpus: every document but the reading ones
  for (size_t i = 0; i < w.documents.size(); ++i) {
    if (w.entities[i].split != WorldSplit::kReading) expected.push_back(&w.documents[i]);
  }
  ASSERT_LT(expected.size(), w.documents.size());
  size_t n = 0;
  while (std::getline(corpus, line)) {
    const auto j = nlohmann::json::parse(line);
    ASSERT_LT(n, expected.size());
    EXPECT_EQ(j.at("id").get<std::string>(), expected[n]->id);
    EXPECT_EQ(j.at("text").get<std::string>(), expected[n]->text);
    ++n;
  }
  EXPECT_EQ(n, expected.size());
  std::ifstream test(dir / "questions-test.jsonl");
  std::getline(test, line);
  const auto q = nlohmann::json::parse(line);
  EXPECT_EQ(q.at("answers").at(0).get<std::string>(), w.test_questions[0].answer);
  EXPECT_EQ(q.at("gold_passage_id").get<std::string>(), w.test_questions[0].gold_passage_id);
  EXPECT_NE(test::error_of([&] { read_lm_examples(dir / "missing.txt"); }).find("missing.txt"),
            std::string::npos);
}

// The knowledge encoder's training set: train questions, reading practice over its short
// contexts, and counterfactual documents that state a fresh answer wherever the old one stood.
TEST(World, KnowledgeSetHoldsReadingAndCounterfactualQuestions) {
  WorldOptions o = small_world();
  o.counterfactuals = 2;
  const World w = generate_world(o);
  ASSERT_FALSE(w.reading_questions.empty());
  ASSERT_EQ(w.knowledge_questions.size(),
            w.train_questions.size() + w.reading_questions.size() + 2 * w.train_questions.size());
  ASSERT_EQ(w.knowledge_passages.size(), w.reading_questions.size() + 2 * w.train_questions.size());
  std::map<std::string, const WorldDocument*> passages;
  for (const auto& d : w.knowledge_passages) passages[d.id] = &d;
  std::map<std::string, const WorldDocument*> documents;
  for (const auto& d : w.documents) documents[d.id] = &d;
  size_t reading = 0, counterfactual = 0;
  for (size_t i = 0; i < w.knowledge_questions.size(); ++i) {
    const auto& q = w.knowledge_questions[i];
    if (i < w.train_questions.size()) {  // the train questions first, over their own documents
      EXPECT_EQ(q.question, w.train_questions[i].question);
      EXPECT_EQ(q.gold_passage_id, w.train_questions[i].gold_passage_id);
      continue;
    }
    ASSERT_TRUE(passages.count(q.gold_passage_id)) << q.gold_passage_id;
    const auto& text = passages.at(q.gold_passage_id)->text;
    EXPECT_NE(text.find(q.answer), std::string::npos) << q.question << " / " << text;
    if (q.gold_passage_id.rfind("ctx-", 0) == 0) {
      ++reading;
      continue;
    }
    ASSERT_EQ(q.gold_passage_id.rfind("cf-", 0), 0u) << q.gold_passage_id;
    ++counterfactual;
    // The document of the train question it varies, with its answer replaced throughout.
    const size_t t = (i - w.train_questions.size() - w.reading_questions.size()) / 2;
    const auto& original = w.train_questions[t];
    EXPECT_EQ(q.question, original.question);
    EXPECT_EQ(q.attribute, original.attribute);
    EXPECT_NE(q.answer, original.answer);
    const auto& doc = *documents.at(original.gold_passage_id);
    EXPECT_EQ(passages.at(q.gold_passage_id)->title, doc.title);
    EXPECT_NE(doc.text.find(original.answer), std::string::npos);
    // Every whole-word occurrence replaced (a city "Bram" is not part of "Bramby"; answers are
    // letters, digits and spaces, nothing a regex would read as syntax).
    EXPECT_EQ(text,
              std::regex_replace(doc.text, std::regex("\\b" + original.answer + "\\b"), q.answer));
  }
  EXPECT_EQ(reading, w.reading_questions.size());
  EXPECT_EQ(counterfactual, 2 * w.train_questions.size());

  // Drawn last: the rest of the world, lm.txt included, does not depend on it.
  o.counterfactuals = 0;
  const World none = generate_world(o);
  EXPECT_EQ(none.lm_examples, w.lm_examples);
  EXPECT_EQ(none.test_questions.size(), w.test_questions.size());
  EXPECT_EQ(none.knowledge_questions.size(), w.train_questions.size() + w.reading_questions.size());

  // On disk: knowledge-passages.jsonl holds the corpus and the knowledge set's passages, so
  // every gold passage of the knowledge, dev and test questions.
  test::TempDir dir;
  write_world(w, dir.path());
  std::set<std::string> ids;
  std::ifstream in(dir / "knowledge-passages.jsonl");
  for (std::string line; std::getline(in, line);)
    ids.insert(nlohmann::json::parse(line).at("id").get<std::string>());
  for (const auto* file :
       {"questions-knowledge.jsonl", "questions-dev.jsonl", "questions-test.jsonl"}) {
    std::ifstream qs(dir / file);
    size_t n = 0;
    for (std::string line; std::getline(qs, line); ++n) {
      EXPECT_TRUE(ids.count(nlohmann::json::parse(line).at("gold_passage_id").get<std::string>()))
          << file << ": " << line;
    }
    EXPECT_GT(n, 0u) << file;
  }
}

TEST(World, RejectsBadOptions) {
  WorldOptions o = small_world();
  o.people = 0;
  EXPECT_NE(test::error_of([&] { generate_world(o); }).find("people"), std::string::npos);
  o = small_world();
  o.heldout_fraction = 0.9;
  EXPECT_NE(test::error_of([&] { generate_world(o); }).find("fraction"), std::string::npos);
  o = small_world();
  o.counterfactuals = -1;
  EXPECT_NE(test::error_of([&] { generate_world(o); }).find("counterfactuals"), std::string::npos);
}

}  // namespace
}  // namespace kvrag
