// The embedded demo world: a seeded, fictional knowledge base that kvrag's whole pipeline can
// be trained and evaluated on without any download.
//
// Entities (people, organisations, inventions, cities, countries) carry attributes that point at
// each other (a person is born in a city and works for an organisation; an organisation was
// founded by a person, …). Every entity gets one document: its facts written out from varied
// templates (each fact in one of several phrasings, some twice), with distractor sentences
// (another person with the same first name or surname, filler). Questions ask for one
// attribute in one of several phrasings; answers are short (a name, a year, a city).
//
// Entities are split three ways, so that evaluation measures retrieval, not memory:
//   lm       documents and questions go into the LLM's pre-training text (lm.txt), as plain
//            documents, closed-book question/answer pairs and in-context ones — the LLM learns
//            the language, the answer format and reading from a context;
//   train    documents only in the retrieval corpus; questions in questions-train.jsonl (for
//            fine-tuning the retriever and training the knowledge encoder);
//   heldout  documents only in the retrieval corpus; questions in questions-dev/test.jsonl.
//   reading  throwaway entities for reading practice: short parts of their documents serve
//            only as contexts of in-context question/answer pairs in lm.txt (never plain text,
//            never closed-book, not in the retrieval corpus). A name seen once cannot be memorised,
//            so these pairs teach the LLM to copy the answer out of its context — the skill
//            that in-context RAG and the knowledge encoder's prefix rely on.
// Cities and countries belong to `lm`. An `lm` (`reading`) entity only ever points at cities
// and at entities of its own split, so no name of a train or held-out entity (and hence none
// of their facts) appears in lm.txt.
//
// Fairness (the protected attribute and its stereotype): every person belongs to one of two
// invented communities, said in one sentence of their document and unrelated to their facts,
// except through a stereotype planted in the pre-training text: each community has a home city,
// and a `stereotype` share of `lm` people are born in their community's home city. Reading
// people are born anywhere, and so are train people unless `train_stereotype` says otherwise
// (by default the knowledge encoder's data carries no stereotype; with it, the encoder can
// learn the community as a shortcut — the case a fairness term is for);
// held-out people are born in their home city half the time, so half the held-out birthplace
// questions are stereotypical, half anti-stereotypical. Each person's document has a
// counterfactual twin ("tw-person-N", knowledge-passages.jsonl only): the same text with the
// other community. The communities are drawn from a PRNG of their own, so the rest of the world
// (names, facts, templates) is what it would be without them.
//
// generate_world is a pure function of WorldOptions (its own PRNG, no std:: distributions whose
// output differs between standard libraries).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kvrag {

struct WorldOptions {
  uint64_t seed = 1;
  int people = 1200;
  int organisations = 300;
  int inventions = 300;
  int cities = 120;
  int countries = 16;
  double train_fraction = 0.25;  // of people, organisations and inventions
  double heldout_fraction = 0.25;
  double reading_fraction = 0.0;  // the rest is `lm`
  int dev_questions = 200;        // taken from the held-out questions; the rest is test
  int max_test_questions = 600;   // 0 = all remaining
  int phrasings_per_fact = 2;     // questions per (entity, attribute) in lm.txt and train
  int counterfactuals = 1;        // counterfactual documents per train question (knowledge set)
  double stereotype = 0.9;        // share of `lm` people born in their community's home city
  double train_stereotype = 0.0;  // … of `train` people (the knowledge encoder's training data)
};

enum class WorldSplit { kLm, kTrain, kHeldout, kReading };
const char* split_name(WorldSplit split);

struct WorldEntity {
  std::string id;    // "person-17", "org-3", … (the document id)
  std::string kind;  // person | organisation | invention | city | country
  std::string name;  // unique across the world
  WorldSplit split = WorldSplit::kLm;
  std::map<std::string, std::string> attributes;  // attribute → value (names, years)
};

struct WorldDocument {
  std::string id;
  std::string title;
  std::string text;
};

struct WorldQuestion {
  std::string question;
  std::string answer;
  std::string gold_passage_id;  // the document of the entity asked about
  std::string attribute;        // born_year, born_city, employer, …
  // Questions about people: the person's community, and their document's counterfactual twin.
  std::string group{}, twin_passage_id{};
  bool stereotypical = false;  // fairness questions: born in the community's home city
};

struct World {
  WorldOptions options;
  std::vector<WorldEntity> entities;
  // one per entity, same order (all but `reading`: the retrieval corpus)
  std::vector<WorldDocument> documents;
  std::vector<WorldQuestion> lm_questions, reading_questions, train_questions, dev_questions,
      test_questions;
  // The knowledge encoder's training set: the train questions, the reading questions over their
  // short contexts ("ctx-N"), and counterfactual questions over train documents whose answer was
  // replaced by a fresh value everywhere in the text ("cf-N": another city, year, person or a new
  // organisation name). The reading and counterfactual passages are in no corpus and no lm.txt
  // text; they teach the encoder to hand over what a segment says, not what it has seen before.
  std::vector<WorldQuestion> knowledge_questions;
  std::vector<WorldDocument> knowledge_passages;  // ctx-N, cf-N and tw-person-N only
  // The fairness questions: the birthplace of every held-out person (group, twin and
  // stereotypical set), and the two communities with their home cities.
  std::vector<WorldQuestion> fairness_questions;
  std::vector<std::string> communities, home_cities;
  // Pre-training examples of lm.txt, each one text (documents, question prompts with answers,
  // context prompts with answers; see qa/prompt.h). None contains a blank line.
  std::vector<std::string> lm_examples;
};

// Throws Error for non-positive sizes or fractions outside [0, 1].
World generate_world(const WorldOptions& options);

// Writes DIR/corpus.jsonl {"id","title","text"} (every document but those of `reading` entities),
// DIR/lm.txt (examples separated by a blank line),
// DIR/questions-{train,dev,test,knowledge,fairness}.jsonl {"question","answers":[..],
// "gold_passage_id","attribute"[,"group","twin_passage_id"][,"stereotypical"]},
// DIR/knowledge-passages.jsonl (the corpus and the knowledge set's own passages: every gold
// passage of the knowledge, dev, test and fairness questions, and every twin) and
// DIR/world.json (options and entities), each atomically. Creates DIR.
void write_world(const World& world, const std::string& dir);

}  // namespace kvrag
