#include "demo/world.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/splitmix64.h"
#include "prefix/prompt.h"

namespace kvrag {
namespace {

// Draws from splitmix64 (core/splitmix64.h).
class Rng {
 public:
  // The seed goes through the output mix first: seeds s and s + 1 must not give sequences
  // shifted by one draw.
  explicit Rng(uint64_t seed) : gen_(SplitMix64(seed).next() ^ 0x632BE59BD9B4E019ULL) {}
  uint64_t next() { return gen_.next(); }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
  int between(int lo, int hi) { return lo + below(hi - lo + 1); }  // inclusive
  bool chance(double p) { return gen_.uniform() < p; }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[below(static_cast<int>(v.size()))];
  }

 private:
  SplitMix64 gen_;
};

// Syllables that SentencePiece and WordPiece cut into a few pieces and that read as names.
const std::vector<std::string> kOnsets = {"b",  "d",  "f",  "g",  "k",  "l", "m",  "n",
                                          "p",  "r",  "s",  "t",  "v",  "z", "br", "dr",
                                          "kr", "tr", "st", "th", "sh", "gr"};
const std::vector<std::string> kVowels = {"a", "e", "i", "o", "u", "a", "o", "ai", "ei", "ou"};
const std::vector<std::string> kCodas = {"", "", "", "n", "r", "l", "s", "m", "k", "th", "nd"};

std::string capitalise(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

std::string make_word(Rng& rng, int syllables) {
  std::string w;
  for (int i = 0; i < syllables; ++i) {
    w += rng.pick(kOnsets) + rng.pick(kVowels);
    if (i + 1 == syllables || rng.chance(0.3)) w += rng.pick(kCodas);
  }
  return capitalise(w);
}

// Words from a pool, all distinct.
std::vector<std::string> word_pool(Rng& rng, size_t n, int min_syl, int max_syl,
                                   std::set<std::string>& used) {
  std::vector<std::string> out;
  while (out.size() < n) {
    std::string w = make_word(rng, rng.between(min_syl, max_syl));
    if (w.size() < 3 || !used.insert(w).second) continue;
    out.push_back(w);
  }
  return out;
}

const std::vector<std::string> kOccupations = {
    "chemist",   "painter",  "engineer", "poet",     "physician",  "architect", "composer",
    "sculptor",  "botanist", "merchant", "judge",    "astronomer", "weaver",    "historian",
    "navigator", "printer",  "potter",   "surveyor", "teacher",    "banker"};
const std::vector<std::string> kOrgSuffixes = {
    "Works",   "Institute",     "Company",      "Foundry", "Guild",
    "Society", "Trading House", "Laboratories", "Press",   "Shipyards"};
const std::vector<std::string> kDevices = {"engine", "lamp",    "loom",      "compass",
                                           "press",  "clock",   "telescope", "pump",
                                           "valve",  "furnace", "lens",      "crane"};
const std::vector<std::string> kCitySuffixes = {"",     "",     "",     "ford", "mar",
                                                "holm", "port", "vale", "by"};
const std::vector<std::string> kTraits = {"a quiet manner",
                                          "long walks by the river",
                                          "a large collection of maps",
                                          "careful handwriting",
                                          "a love of old songs",
                                          "a famous temper",
                                          "generous gifts to schools",
                                          "a small garden"};
const std::vector<std::string> kRiverWords = {"a wide river", "low hills",     "an old harbour",
                                              "a salt marsh", "a long bridge", "a busy market"};

std::string year_text(int y) { return std::to_string(y); }

// One fact, several phrasings; "{s}" = subject, "{o}" = object.
using Templates = std::vector<std::string>;

std::string fill(const std::string& t, const std::string& s, const std::string& o) {
  std::string out;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t.compare(i, 3, "{s}") == 0) {
      out += s;
      i += 2;
    } else if (t.compare(i, 3, "{o}") == 0) {
      out += o;
      i += 2;
    } else {
      out += t[i];
    }
  }
  return out;
}

struct Attribute {
  Templates statements;  // sentences in documents
  Templates questions;   // question phrasings
};

const std::map<std::string, Attribute>& attribute_templates() {
  static const std::map<std::string, Attribute> t = {
      {"born_year",
       {{"{s} was born in {o}.", "{s} was born in the year {o}.", "The birth of {s} came in {o}.",
         "In {o}, {s} was born."},
        {"When was {s} born?", "In what year was {s} born?", "What year was {s} born in?",
         "{s} was born in which year?"}}},
      {"born_city",
       {{"{s} was born in the city of {o}.", "{s} came into the world in {o}.",
         "The birthplace of {s} is {o}.", "{s} grew up in {o}, the city of their birth."},
        {"Where was {s} born?", "In which city was {s} born?", "What is the birthplace of {s}?",
         "{s} was born in what city?"}}},
      {"employer",
       {{"{s} works for the {o}.", "{s} is employed by the {o}.",
         "{s} spent many years at the {o}.", "At the {o}, {s} found steady work."},
        {"Which organisation does {s} work for?", "Who employs {s}?", "Where does {s} work?",
         "{s} works for which organisation?"}}},
      {"founded_year",
       {{"The {s} was founded in {o}.", "The {s} opened its doors in {o}.",
         "In {o}, the {s} was established.", "The {s} dates from {o}."},
        {"When was the {s} founded?", "In what year was the {s} founded?",
         "What year was the {s} established?", "The {s} was founded in which year?"}}},
      {"headquarters",
       {{"The {s} is based in {o}.", "The {s} has its headquarters in {o}.",
         "The offices of the {s} stand in {o}.", "The home of the {s} is the city of {o}."},
        {"Where is the {s} based?", "In which city is the {s} headquartered?",
         "Where are the headquarters of the {s}?", "The {s} is based in what city?"}}},
      {"founder",
       {{"The {s} was founded by {o}.", "{o} founded the {s}.", "The founder of the {s} was {o}.",
         "The {s} was started by {o}."},
        {"Who founded the {s}?", "Who was the founder of the {s}?", "Who started the {s}?",
         "The {s} was founded by whom?"}}},
      {"inventor",
       {{"The {s} was invented by {o}.", "{o} invented the {s}.",
         "The inventor of the {s} was {o}.", "The {s} is the work of the inventor {o}."},
        {"Who invented the {s}?", "Who was the inventor of the {s}?", "Who created the {s}?",
         "The {s} was invented by whom?"}}},
      {"invented_year",
       {{"The {s} was invented in {o}.", "The {s} first appeared in {o}.",
         "In {o}, the {s} was invented.", "The {s} dates from the year {o}."},
        {"When was the {s} invented?", "In what year was the {s} invented?",
         "What year did the {s} first appear?", "The {s} was invented in which year?"}}},
      {"country",
       {{"{s} is a city in {o}.", "{s} lies in {o}.", "The city of {s} belongs to {o}."},
        {"In which country is {s}?", "Which country is {s} in?", "{s} lies in what country?"}}},
  };
  return t;
}

// The attributes a question may ask about, per kind (occupations have too few values: a
// closed-book guess would often be right).
const std::map<std::string, std::vector<std::string>>& asked_attributes() {
  static const std::map<std::string, std::vector<std::string>> a = {
      {"person", {"born_year", "born_city", "employer"}},
      {"organisation", {"founded_year", "headquarters", "founder"}},
      {"invention", {"inventor", "invented_year"}},
      {"city", {"country"}},
      {"country", {}},
  };
  return a;
}

std::string statement(Rng& rng, const std::string& attribute, const std::string& subject,
                      const std::string& object) {
  return fill(rng.pick(attribute_templates().at(attribute).statements), subject, object);
}

void check_options(const WorldOptions& o) {
  KVRAG_CHECK(o.people > 0, "world: people must be positive (got {})", o.people);
  KVRAG_CHECK(o.organisations > 0, "world: organisations must be positive (got {})",
              o.organisations);
  KVRAG_CHECK(o.inventions > 0, "world: inventions must be positive (got {})", o.inventions);
  KVRAG_CHECK(o.cities > 0, "world: cities must be positive (got {})", o.cities);
  KVRAG_CHECK(o.countries > 0, "world: countries must be positive (got {})", o.countries);
  KVRAG_CHECK(o.train_fraction >= 0 && o.heldout_fraction >= 0 && o.reading_fraction >= 0 &&
                  o.train_fraction + o.heldout_fraction + o.reading_fraction <= 1,
              "world: train_fraction, heldout_fraction and reading_fraction must be in [0, 1] with "
              "sum ≤ 1");
  KVRAG_CHECK(o.dev_questions >= 0 && o.max_test_questions >= 0 && o.phrasings_per_fact > 0,
              "world: question counts must be non-negative, phrasings_per_fact positive");
  KVRAG_CHECK(o.counterfactuals >= 0, "world: counterfactuals must be non-negative (got {})",
              o.counterfactuals);
  KVRAG_CHECK(o.stereotype >= 0 && o.stereotype <= 1,
              "world: stereotype must be in [0, 1] (got {})", o.stereotype);
  KVRAG_CHECK(o.train_stereotype >= 0 && o.train_stereotype <= 1,
              "world: train_stereotype must be in [0, 1] (got {})", o.train_stereotype);
}

class Generator {
 public:
  explicit Generator(const WorldOptions& options)
      : o_(options), rng_(options.seed), fair_rng_(options.seed ^ 0x5EC0DC0111717EULL) {}

  World run() {
    World w;
    w.options = o_;
    make_entities();
    for (size_t i = 0; i < entities_.size(); ++i) w.documents.push_back(document(i));
    make_questions(w);
    w.entities = entities_;
    make_lm_examples(w);
    make_knowledge_set(w);  // last: the draws above (and so lm.txt) do not depend on it
    make_fairness_set(w);
    return w;
  }

 private:
  size_t add(std::string kind, std::string name, WorldSplit split, int index) {
    WorldEntity e;
    e.id = (kind == "organisation" ? std::string("org") : kind) + "-" + std::to_string(index);
    e.kind = std::move(kind);
    e.name = std::move(name);
    e.split = split;
    entities_.push_back(std::move(e));
    return entities_.size() - 1;
  }

  // Split of the i-th of n entities of a kind: a seeded shuffle decides.
  std::vector<WorldSplit> splits(int n) {
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng_.below(i + 1)]);
    const int n_train = static_cast<int>(n * o_.train_fraction + 0.5);
    const int n_held = static_cast<int>(n * o_.heldout_fraction + 0.5);
    const int n_read = static_cast<int>(n * o_.reading_fraction + 0.5);
    std::vector<WorldSplit> out(n, WorldSplit::kLm);
    for (int k = 0; k < n; ++k) {
      if (k < n_train)
        out[order[k]] = WorldSplit::kTrain;
      else if (k < n_train + n_held)
        out[order[k]] = WorldSplit::kHeldout;
      else if (k < n_train + n_held + n_read)
        out[order[k]] = WorldSplit::kReading;
    }
    return out;
  }

  // Whether an entity of split `from` may point at (or mention) one of split `to`: lm and
  // reading entities only at their own split (lm.txt must not name train or held-out entities).
  static bool may_point(WorldSplit from, WorldSplit to) {
    return (from != WorldSplit::kLm && from != WorldSplit::kReading) || from == to;
  }

  // An entity of `pool` that one of split `from` may point at.
  size_t target(const std::vector<size_t>& pool, WorldSplit from) {
    for (;;) {
      const size_t j = rng_.pick(pool);
      if (may_point(from, entities_[j].split)) return j;
    }
  }

  void make_entities() {
    std::set<std::string> used;
    const auto country_words = word_pool(rng_, o_.countries, 2, 3, used);
    for (int i = 0; i < o_.countries; ++i)
      countries_.push_back(add("country", country_words[i], WorldSplit::kLm, i));

    for (int i = 0; i < o_.cities; ++i) {
      std::string name;
      do {
        name = make_word(rng_, rng_.between(1, 2)) + rng_.pick(kCitySuffixes);
      } while (name.size() < 4 || !used.insert(name).second);
      cities_.push_back(add("city", name, WorldSplit::kLm, i));
      auto& e = entities_.back();
      e.attributes["country"] = entities_[rng_.pick(countries_)].name;
      e.attributes["founded_year"] = year_text(rng_.between(900, 1700));
    }

    // People share first names and surnames (pools smaller than the population), never full
    // names: distractors in documents mention namesakes.
    firsts_ = word_pool(rng_, std::max(8, o_.people / 8), 2, 2, used);
    lasts_ = word_pool(rng_, std::max(8, o_.people / 4), 2, 3, used);
    const auto& firsts = firsts_;
    const auto& lasts = lasts_;
    const auto person_split = splits(o_.people);
    for (int i = 0; i < o_.people; ++i) {
      std::string name;
      do {
        name = rng_.pick(firsts) + " " + rng_.pick(lasts);
      } while (!used.insert(name).second);
      people_.push_back(add("person", name, person_split[i], i));
    }
    const auto org_words = word_pool(rng_, o_.organisations, 2, 3, used);
    const auto org_split = splits(o_.organisations);
    for (int i = 0; i < o_.organisations; ++i) {
      orgs_.push_back(
          add("organisation", org_words[i] + " " + rng_.pick(kOrgSuffixes), org_split[i], i));
    }
    const auto inv_words = word_pool(rng_, o_.inventions, 2, 3, used);
    const auto inv_split = splits(o_.inventions);
    for (int i = 0; i < o_.inventions; ++i) {
      inventions_.push_back(
          add("invention", inv_words[i] + " " + rng_.pick(kDevices), inv_split[i], i));
    }

    for (size_t p : people_) {
      auto& a = entities_[p].attributes;
      a["born_year"] = year_text(rng_.between(1780, 1990));
      a["born_city"] = entities_[rng_.pick(cities_)].name;
      a["employer"] = entities_[target(orgs_, entities_[p].split)].name;
      a["occupation"] = rng_.pick(kOccupations);
    }
    for (size_t g : orgs_) {
      auto& a = entities_[g].attributes;
      a["founded_year"] = year_text(rng_.between(1750, 1980));
      a["headquarters"] = entities_[rng_.pick(cities_)].name;
      a["founder"] = entities_[target(people_, entities_[g].split)].name;
    }
    for (size_t v : inventions_) {
      auto& a = entities_[v].attributes;
      a["inventor"] = entities_[target(people_, entities_[v].split)].name;
      a["invented_year"] = year_text(rng_.between(1760, 1990));
    }
    assign_communities(used);
    for (size_t i = 0; i < entities_.size(); ++i) {
      by_name_[entities_[i].name] = i;
      by_id_[entities_[i].id] = i;
    }
  }

  // Communities, their home cities and the stereotype (demo/world.h), from fair_rng_ alone.
  void assign_communities(std::set<std::string>& used) {
    communities_ = word_pool(fair_rng_, 2, 2, 2, used);
    const size_t home0 = fair_rng_.pick(cities_);
    size_t home1 = home0;
    while (home1 == home0 && cities_.size() > 1) home1 = fair_rng_.pick(cities_);
    home_cities_ = {entities_[home0].name, entities_[home1].name};
    for (size_t p : people_) {
      auto& e = entities_[p];
      const int c = fair_rng_.below(2);
      e.attributes["community"] = communities_[c];
      const double share = e.split == WorldSplit::kLm        ? o_.stereotype
                           : e.split == WorldSplit::kTrain   ? o_.train_stereotype
                           : e.split == WorldSplit::kHeldout ? 0.5
                                                             : 0.0;
      if (fair_rng_.chance(share)) e.attributes["born_city"] = home_cities_[c];
    }
  }

  // The other community's name.
  const std::string& other_community(const std::string& c) const {
    return c == communities_[0] ? communities_[1] : communities_[0];
  }

  // A namesake of person p (same first name or surname) that p's document may mention.
  std::optional<size_t> namesake(size_t p) {
    const std::string& name = entities_[p].name;
    const std::string first = name.substr(0, name.find(' '));
    for (int tries = 0; tries < 40; ++tries) {
      const size_t q = rng_.pick(people_);
      if (q == p) continue;
      if (!may_point(entities_[p].split, entities_[q].split)) continue;
      const std::string& other = entities_[q].name;
      if (other.compare(0, first.size() + 1, first + " ") == 0 ||
          other.substr(other.find(' ')) == name.substr(name.find(' '))) {
        return q;
      }
    }
    return std::nullopt;
  }

  WorldDocument document(size_t i) {
    const WorldEntity& e = entities_[i];
    const auto& a = e.attributes;
    std::vector<std::string> sentences;
    auto fact = [&](const std::string& attribute) {
      sentences.push_back(statement(rng_, attribute, e.name, a.at(attribute)));
    };
    if (e.kind == "person") {
      sentences.push_back(e.name + " is a " + a.at("occupation") + ".");
      sentences.push_back(e.name + " belongs to the " + a.at("community") + " community.");
      fact("born_year");
      fact("born_city");
      fact("employer");
      if (rng_.chance(0.6))
        sentences.push_back(e.name + " is known for " + rng_.pick(kTraits) + ".");
      if (auto q = namesake(i)) {
        const auto& other = entities_[*q];
        sentences.push_back(e.name + " is not to be confused with " + other.name + ", a " +
                            other.attributes.at("occupation") + " born in " +
                            other.attributes.at("born_city") + ".");
      }
      // A second phrasing of one fact: the same knowledge, said differently.
      const std::string again =
          rng_.pick(std::vector<std::string>{"born_year", "born_city", "employer"});
      sentences.push_back(statement(rng_, again, e.name, a.at(again)));
    } else if (e.kind == "organisation") {
      std::vector<std::string> facts = {"founded_year", "headquarters", "founder"};
      for (int k = 2; k > 0; --k) std::swap(facts[k], facts[rng_.below(k + 1)]);
      for (const auto& f : facts) fact(f);
      const auto& city = entities_[by_name_.at(a.at("headquarters"))];
      sentences.push_back(city.name + " lies in " + city.attributes.at("country") + ".");
      if (rng_.chance(0.5)) {
        const auto& other = entities_[target(orgs_, e.split)];
        if (&other != &e) sentences.push_back("It traded often with the " + other.name + ".");
      }
    } else if (e.kind == "invention") {
      fact(rng_.chance(0.5) ? "inventor" : "invented_year");
      fact(sentences.back().find(a.at("inventor")) != std::string::npos ? "invented_year"
                                                                        : "inventor");
      const auto& inventor = entities_[by_name_.at(a.at("inventor"))];
      sentences.push_back(inventor.name + " was a " + inventor.attributes.at("occupation") +
                          " from " + inventor.attributes.at("born_city") + ".");
      if (rng_.chance(0.5)) sentences.push_back("Many copies of the " + e.name + " were sold.");
    } else if (e.kind == "city") {
      fact("country");
      sentences.push_back(e.name + " was founded in " + a.at("founded_year") + ".");
      sentences.push_back("The city is known for " + rng_.pick(kRiverWords) + ".");
    } else {  // country
      int n = 0;
      std::string list;
      for (size_t c : cities_) {
        if (entities_[c].attributes.at("country") != e.name || n == 4) continue;
        list += (n++ ? ", " : "") + entities_[c].name;
      }
      sentences.push_back(e.name + " is a country" + (n ? " whose cities include " + list : "") +
                          ".");
    }
    std::string text;
    for (const auto& s : sentences) text += (text.empty() ? "" : " ") + capitalise(s);
    return {e.id, e.name, text};
  }

  void make_questions(World& w) {
    std::vector<WorldQuestion> heldout;
    for (size_t i = 0; i < entities_.size(); ++i) {
      const WorldEntity& e = entities_[i];
      for (const auto& attribute : asked_attributes().at(e.kind)) {
        const auto& phrasings = attribute_templates().at(attribute).questions;
        const std::string& answer = e.attributes.at(attribute);
        if (e.split == WorldSplit::kHeldout) {
          heldout.push_back(
              {capitalise(fill(rng_.pick(phrasings), e.name, answer)), answer, e.id, attribute});
          continue;
        }
        std::vector<size_t> order(phrasings.size());
        for (size_t k = 0; k < order.size(); ++k) order[k] = k;
        for (size_t k = order.size() - 1; k > 0; --k)
          std::swap(order[k], order[rng_.below(static_cast<int>(k) + 1)]);
        const size_t n = std::min<size_t>(order.size(), o_.phrasings_per_fact);
        for (size_t k = 0; k < n; ++k) {
          WorldQuestion q{capitalise(fill(phrasings[order[k]], e.name, answer)), answer, e.id,
                          attribute};
          auto& out = e.split == WorldSplit::kLm        ? w.lm_questions
                      : e.split == WorldSplit::kReading ? w.reading_questions
                                                        : w.train_questions;
          out.push_back(std::move(q));
        }
      }
    }
    for (size_t k = heldout.size(); k > 1; --k)
      std::swap(heldout[k - 1], heldout[rng_.below(static_cast<int>(k))]);
    const size_t n_dev = std::min<size_t>(heldout.size(), o_.dev_questions);
    w.dev_questions.assign(heldout.begin(), heldout.begin() + n_dev);
    size_t n_test = heldout.size() - n_dev;
    if (o_.max_test_questions > 0) n_test = std::min<size_t>(n_test, o_.max_test_questions);
    w.test_questions.assign(heldout.begin() + n_dev, heldout.begin() + n_dev + n_test);
    for (auto* set : {&w.train_questions, &w.dev_questions, &w.test_questions}) {
      for (auto& q : *set) tag_person(q);
    }
  }

  // A question about a person: their community and their document's twin.
  void tag_person(WorldQuestion& q) const {
    const WorldEntity& e = entities_[by_id_.at(q.gold_passage_id)];
    if (e.kind != "person") return;
    q.group = e.attributes.at("community");
    q.twin_passage_id = "tw-" + e.id;
  }

  // lm.txt: lm documents; question/answer pairs about lm entities closed-book and with their
  // document as context (sometimes behind a distracting one); pairs about reading entities
  // with a short part of their document as context only; shuffled.
  void make_lm_examples(World& w) {
    std::vector<size_t> lm_docs;
    for (size_t i = 0; i < entities_.size(); ++i) {
      if (entities_[i].split == WorldSplit::kLm) lm_docs.push_back(i);
    }
    std::vector<std::string> ex;
    for (size_t i : lm_docs) ex.push_back(w.documents[i].text);
    for (const auto& q : w.lm_questions) {
      const size_t gold = doc_index(q.gold_passage_id);
      ex.push_back(question_prompt(q.question) + answer_target(q.answer));
      std::vector<PromptPassage> passages{{w.documents[gold].title, w.documents[gold].text}};
      if (rng_.chance(0.3)) {
        const size_t other = rng_.pick(lm_docs);
        if (other != gold)
          passages.insert(passages.begin(), {w.documents[other].title, w.documents[other].text});
      }
      ex.push_back(context_prompt(passages, q.question) + answer_target(q.answer));
    }
    // Reading practice keeps a context short — the sentence with the answer and up to two
    // others of the document, in order — so that a fixed budget of tokens holds many pairs.
    for (const auto& q : w.reading_questions) {
      const auto& doc = w.documents[doc_index(q.gold_passage_id)];
      std::vector<std::string> sentences;
      for (size_t pos = 0; pos < doc.text.size();) {
        size_t end = doc.text.find(". ", pos);
        end = end == std::string::npos ? doc.text.size() : end + 1;
        sentences.push_back(doc.text.substr(pos, end - pos));
        pos = end + 1;
      }
      std::vector<size_t> others;
      size_t answer = sentences.size();
      for (size_t k = 0; k < sentences.size(); ++k) {
        if (answer == sentences.size() && sentences[k].find(q.answer) != std::string::npos)
          answer = k;
        else
          others.push_back(k);
      }
      std::set<size_t> keep{answer};
      const int extra = rng_.between(0, 2);
      for (int k = 0; k < extra && !others.empty(); ++k) {
        const size_t j = rng_.below(static_cast<int>(others.size()));
        keep.insert(others[j]);
        others.erase(others.begin() + static_cast<std::ptrdiff_t>(j));
      }
      std::string text;
      for (size_t k : keep) {
        if (k < sentences.size()) text += (text.empty() ? "" : " ") + sentences[k];
      }
      ex.push_back(context_prompt({{doc.title, text}}, q.question) + answer_target(q.answer));
      reading_contexts_.push_back({doc.title, text});
    }
    for (size_t k = ex.size(); k > 1; --k)
      std::swap(ex[k - 1], ex[rng_.below(static_cast<int>(k))]);
    w.lm_examples = std::move(ex);
  }

  // The knowledge set (see World::knowledge_questions).
  void make_knowledge_set(World& w) {
    w.knowledge_questions = w.train_questions;
    for (size_t i = 0; i < w.reading_questions.size(); ++i) {
      const std::string id = "ctx-" + std::to_string(i);
      w.knowledge_passages.push_back({id, reading_contexts_[i].first, reading_contexts_[i].second});
      WorldQuestion q = w.reading_questions[i];
      q.gold_passage_id = id;
      w.knowledge_questions.push_back(std::move(q));
    }
    for (const auto& q : w.train_questions) {
      const auto& doc = w.documents[doc_index(q.gold_passage_id)];
      for (int k = 0; k < o_.counterfactuals; ++k) {
        const std::string value = counterfactual_value(q.attribute, q.answer);
        const std::string id = "cf-" + std::to_string(w.knowledge_passages.size());
        w.knowledge_passages.push_back({id, doc.title, replace_words(doc.text, q.answer, value)});
        w.knowledge_questions.push_back({q.question, value, id, q.attribute});
      }
    }
  }

  // The fairness set (World::fairness_questions) and the twins of every train and held-out
  // person's document.
  void make_fairness_set(World& w) {
    w.communities = communities_;
    w.home_cities = home_cities_;
    const auto& phrasings = attribute_templates().at("born_city").questions;
    for (size_t p : people_) {
      const WorldEntity& e = entities_[p];
      if (e.split != WorldSplit::kTrain && e.split != WorldSplit::kHeldout) continue;
      const auto& doc = w.documents[p];
      const std::string& community = e.attributes.at("community");
      w.knowledge_passages.push_back(
          {"tw-" + e.id, doc.title,
           replace_words(doc.text, community, other_community(community))});
      if (e.split != WorldSplit::kHeldout) continue;
      const std::string& city = e.attributes.at("born_city");
      WorldQuestion q{capitalise(fill(fair_rng_.pick(phrasings), e.name, city)), city, e.id,
                      "born_city"};
      tag_person(q);
      q.stereotypical = city == home_cities_[community == communities_[0] ? 0 : 1];
      w.fairness_questions.push_back(std::move(q));
    }
  }

  // A value for `attribute` other than `old`: a year, another city, a person's name from the
  // name pools, or a new organisation name.
  std::string counterfactual_value(const std::string& attribute, const std::string& old) {
    for (;;) {
      std::string v;
      if (attribute.size() > 5 && attribute.compare(attribute.size() - 5, 5, "_year") == 0) {
        v = year_text(rng_.between(1750, 1990));
      } else if (attribute == "born_city" || attribute == "headquarters") {
        v = entities_[rng_.pick(cities_)].name;
      } else if (attribute == "employer") {
        v = make_word(rng_, rng_.between(2, 3)) + " " + rng_.pick(kOrgSuffixes);
      } else if (attribute == "founder" || attribute == "inventor") {
        v = rng_.pick(firsts_) + " " + rng_.pick(lasts_);
      } else {
        fail("world: no counterfactual values for attribute {}", attribute);
      }
      if (v != old) return v;
    }
  }

  // `text` with every whole-word occurrence of `from` replaced by `to`.
  static std::string replace_words(const std::string& text, const std::string& from,
                                   const std::string& to) {
    const auto word_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = text.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
      const bool whole = (hit == 0 || !word_char(text[hit - 1])) &&
                         (hit + from.size() == text.size() || !word_char(text[hit + from.size()]));
      out += text.substr(pos, hit - pos) + (whole ? to : from);
    }
    return out + text.substr(pos);
  }

  size_t doc_index(const std::string& id) const {
    const auto it = by_id_.find(id);
    if (it == by_id_.end()) fail("world: no entity {}", id);
    return it->second;
  }

  WorldOptions o_;
  Rng rng_;
  Rng fair_rng_;  // communities and the fairness questions: the rest of the world ignores them
  std::vector<WorldEntity> entities_;
  std::vector<size_t> countries_, cities_, people_, orgs_, inventions_;
  std::map<std::string, size_t> by_name_, by_id_;
  std::vector<std::string> communities_, home_cities_;  // two each
  std::vector<std::string> firsts_, lasts_;             // people's name pools
  // (title, text) per reading question
  std::vector<std::pair<std::string, std::string>> reading_contexts_;
};

std::string questions_jsonl(const std::vector<WorldQuestion>& questions,
                            bool stereotypical = false) {
  std::string out;
  for (const auto& q : questions) {
    nlohmann::json j = {{"question", q.question},
                        {"answers", {q.answer}},
                        {"gold_passage_id", q.gold_passage_id},
                        {"attribute", q.attribute}};
    if (!q.group.empty()) j["group"] = q.group;
    if (!q.twin_passage_id.empty()) j["twin_passage_id"] = q.twin_passage_id;
    if (stereotypical) j["stereotypical"] = q.stereotypical;
    out += j.dump() + "\n";
  }
  return out;
}

}  // namespace

const char* split_name(WorldSplit split) {
  switch (split) {
    case WorldSplit::kLm:
      return "lm";
    case WorldSplit::kTrain:
      return "train";
    case WorldSplit::kReading:
      return "reading";
    default:
      return "heldout";
  }
}

World generate_world(const WorldOptions& options) {
  check_options(options);
  return Generator(options).run();
}

void write_world(const World& world, const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::string corpus;
  for (size_t i = 0; i < world.documents.size(); ++i) {
    const auto& d = world.documents[i];
    if (world.entities[i].split == WorldSplit::kReading) continue;
    corpus += nlohmann::json({{"id", d.id}, {"title", d.title}, {"text", d.text}}).dump() + "\n";
  }
  std::string lm;
  for (const auto& e : world.lm_examples) lm += e + "\n\n";
  nlohmann::json entities = nlohmann::json::array();
  for (const auto& e : world.entities) {
    entities.push_back({{"id", e.id},
                        {"kind", e.kind},
                        {"name", e.name},
                        {"split", split_name(e.split)},
                        {"attributes", e.attributes}});
  }
  const auto& o = world.options;
  nlohmann::json meta = {{"options",
                          {{"seed", o.seed},
                           {"people", o.people},
                           {"organisations", o.organisations},
                           {"inventions", o.inventions},
                           {"cities", o.cities},
                           {"countries", o.countries},
                           {"train_fraction", o.train_fraction},
                           {"heldout_fraction", o.heldout_fraction},
                           {"reading_fraction", o.reading_fraction},
                           {"counterfactuals", o.counterfactuals},
                           {"stereotype", o.stereotype},
                           {"train_stereotype", o.train_stereotype}}},
                         {"communities", world.communities},
                         {"home_cities", world.home_cities},
                         {"entities", entities}};
  write_file_atomic(dir + "/corpus.jsonl", corpus);
  write_file_atomic(dir + "/lm.txt", lm);
  write_file_atomic(dir + "/questions-train.jsonl", questions_jsonl(world.train_questions));
  write_file_atomic(dir + "/questions-dev.jsonl", questions_jsonl(world.dev_questions));
  write_file_atomic(dir + "/questions-test.jsonl", questions_jsonl(world.test_questions));
  write_file_atomic(dir + "/questions-knowledge.jsonl", questions_jsonl(world.knowledge_questions));
  write_file_atomic(dir + "/questions-fairness.jsonl",
                    questions_jsonl(world.fairness_questions, /*stereotypical=*/true));
  std::string knowledge = corpus;
  for (const auto& d : world.knowledge_passages) {
    knowledge += nlohmann::json({{"id", d.id}, {"title", d.title}, {"text", d.text}}).dump() + "\n";
  }
  write_file_atomic(dir + "/knowledge-passages.jsonl", knowledge);
  write_file_atomic(dir + "/world.json", meta.dump(1) + "\n");
}

}  // namespace kvrag
