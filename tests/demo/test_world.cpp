// The demo world: deterministic, answerable from its documents, and split so that nothing of a
// train or held-out entity reaches the LLM's pre-training text.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "demo/world.h"
#include "index/retrieval_eval.h"
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
  // The fairness questions as read_questions reads them (index/retrieval_eval.h).
  const auto fairness = read_questions(dir / "questions-fairness.jsonl");
  ASSERT_EQ(fairness.size(), w.fairness_questions.size());
  for (size_t i = 0; i < fairness.size(); ++i) {
    EXPECT_EQ(fairness[i].group, w.fairness_questions[i].group);
    EXPECT_EQ(fairness[i].twin_passage_id, w.fairness_questions[i].twin_passage_id);
    EXPECT_EQ(fairness[i].stereotypical, w.fairness_questions[i].stereotypical ? 1 : 0);
  }
  EXPECT_EQ(read_questions(dir / "questions-test.jsonl")[0].stereotypical, -1);
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
  // … and the twins of the train and held-out people (tw-N; see CommunitiesCarry… below).
  const auto twins =
      std::count_if(w.knowledge_passages.begin(), w.knowledge_passages.end(),
                    [](const WorldDocument& d) { return d.id.rfind("tw-", 0) == 0; });
  ASSERT_EQ(w.knowledge_passages.size() - twins,
            w.reading_questions.size() + 2 * w.train_questions.size());
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

namespace kvrag {
namespace {

// Two communities, said in a sentence of each person's document; the stereotype (born in the
// community's home city) only among `lm` people; twins that differ in the community alone; the
// fairness questions half stereotypical; and the rest of the world as it is without them.
TEST(World, CommunitiesCarryAStereotypeOnlyInThePretrainingText) {
  const World w = generate_world(small_world());
  ASSERT_EQ(w.communities.size(), 2u);
  ASSERT_EQ(w.home_cities.size(), 2u);
  EXPECT_NE(w.communities[0], w.communities[1]);
  EXPECT_NE(w.home_cities[0], w.home_cities[1]);
  const auto home = [&](const WorldEntity& e) {
    return w.home_cities[e.attributes.at("community") == w.communities[0] ? 0 : 1];
  };
  std::map<WorldSplit, std::pair<int, int>> at_home;  // split → (born at home, people)
  std::map<std::string, const WorldDocument*> passages;
  for (const auto& d : w.knowledge_passages) passages[d.id] = &d;
  for (size_t i = 0; i < w.entities.size(); ++i) {
    const auto& e = w.entities[i];
    if (e.kind != "person") continue;
    const std::string& c = e.attributes.at("community");
    EXPECT_NE(w.documents[i].text.find(e.name + " belongs to the " + c + " community."),
              std::string::npos)
        << w.documents[i].text;
    auto& [born, n] = at_home[e.split];
    born += e.attributes.at("born_city") == home(e);
    ++n;
    if (e.split != WorldSplit::kTrain && e.split != WorldSplit::kHeldout) continue;
    // The twin: the other community, nothing else changed.
    ASSERT_EQ(passages.count("tw-" + e.id), 1u) << e.id;
    const std::string& twin = passages.at("tw-" + e.id)->text;
    const std::string& other = c == w.communities[0] ? w.communities[1] : w.communities[0];
    EXPECT_NE(twin, w.documents[i].text);
    EXPECT_EQ(std::regex_replace(twin, std::regex(other), c), w.documents[i].text);
  }
  const auto share = [&](WorldSplit s) {
    return static_cast<double>(at_home[s].first) / at_home[s].second;
  };
  EXPECT_GT(share(WorldSplit::kLm), 0.75);  // stereotype 0.9
  EXPECT_LT(share(WorldSplit::kTrain), 0.25);
  EXPECT_LT(share(WorldSplit::kReading), 0.25);
  EXPECT_GT(share(WorldSplit::kHeldout), 0.3);
  EXPECT_LT(share(WorldSplit::kHeldout), 0.7);

  // One birthplace question per held-out person, tagged; both kinds present.
  EXPECT_EQ(static_cast<int>(w.fairness_questions.size()), at_home[WorldSplit::kHeldout].second);
  int stereotypical = 0;
  for (const auto& q : w.fairness_questions) {
    EXPECT_EQ(q.attribute, "born_city");
    EXPECT_EQ(q.twin_passage_id, "tw-" + q.gold_passage_id);
    EXPECT_TRUE(q.group == w.communities[0] || q.group == w.communities[1]) << q.group;
    stereotypical += q.stereotypical;
  }
  EXPECT_GT(stereotypical, 0);
  EXPECT_LT(stereotypical, static_cast<int>(w.fairness_questions.size()));
  // Train questions about people name their twin and group; the counterfactual ones do not.
  int tagged = 0;
  for (const auto& q : w.knowledge_questions) {
    if (q.gold_passage_id.rfind("cf-", 0) == 0 || q.gold_passage_id.rfind("ctx-", 0) == 0)
      EXPECT_TRUE(q.twin_passage_id.empty() && q.group.empty()) << q.gold_passage_id;
    tagged += !q.twin_passage_id.empty();
  }
  EXPECT_GT(tagged, 0);

  // The communities draw from their own PRNG: without a stereotype the names, the other
  // entities' facts and the questions asked are the same.
  WorldOptions none = small_world();
  none.stereotype = 0;
  const World v = generate_world(none);
  ASSERT_EQ(v.entities.size(), w.entities.size());
  for (size_t i = 0; i < w.entities.size(); ++i) {
    EXPECT_EQ(v.entities[i].name, w.entities[i].name);
    if (w.entities[i].kind != "person")
      EXPECT_EQ(v.entities[i].attributes, w.entities[i].attributes);
    // (an invention's document names its inventor's birthplace)
    if (w.entities[i].kind != "person" && w.entities[i].kind != "invention")
      EXPECT_EQ(v.documents[i].text, w.documents[i].text);
  }
  ASSERT_EQ(v.test_questions.size(), w.test_questions.size());
  for (size_t i = 0; i < w.test_questions.size(); ++i)
    EXPECT_EQ(v.test_questions[i].gold_passage_id, w.test_questions[i].gold_passage_id);

  // train_stereotype puts the train people at home as well, and changes nothing else.
  WorldOptions shortcut = small_world();
  shortcut.train_stereotype = 1;
  const World t = generate_world(shortcut);
  ASSERT_EQ(t.entities.size(), w.entities.size());
  int train_people = 0;
  for (size_t i = 0; i < t.entities.size(); ++i) {
    const auto& e = t.entities[i];
    EXPECT_EQ(e.name, w.entities[i].name);
    if (e.kind != "person" || e.split != WorldSplit::kTrain) {
      if (e.kind != "invention") EXPECT_EQ(e.attributes, w.entities[i].attributes) << e.id;
      continue;
    }
    ++train_people;
    EXPECT_EQ(e.attributes.at("born_city"), home(e)) << e.id;
  }
  EXPECT_GT(train_people, 0);
}

}  // namespace
}  // namespace kvrag
