// The tiny question-answering world that the answerer, hallucination and query-encoder tests
// share: a random tiny BERT as the retriever, a corpus written in its vocabulary, an index built
// through the CLI, and questions whose answer is a word of one document.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "model/bert.h"
#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "support/cli_runner.h"
#include "support/retrieval_fixture.h"

namespace kvrag::test {

struct TinyQuestion {
  std::string question, answer, doc_id;
};

// Writes ROOT/encoder (tiny BERT, seed 1), ROOT/corpus.jsonl (24 documents of 40 words),
// ROOT/index (build_index_with_cli) and ROOT/questions.jsonl: for each of the first `count`
// documents, "what follows W0 W1 W2?" answered by its 6th word (then `extra_answers`), with the
// document as gold_passage_id when `gold`. Returns the index build's run (exit_code 0 on
// success) and the questions in *questions.
inline CliRun write_tiny_qa_world(const std::string& root, int count, bool gold,
                                  const std::vector<std::string>& extra_answers,
                                  std::vector<TinyQuestion>* questions) {
  write_tiny_encoder(root + "/encoder", 1);
  write_corpus(root + "/corpus.jsonl", 24, 40);
  auto r = build_index_with_cli(root + "/encoder", root + "/corpus.jsonl", root + "/index");
  if (r.exit_code != 0) return r;
  std::ifstream in(root + "/corpus.jsonl");
  std::ofstream qf(root + "/questions.jsonl");
  std::string line;
  for (int d = 0; d < count && std::getline(in, line); ++d) {
    const auto doc = nlohmann::json::parse(line);
    std::istringstream words(doc["text"].get<std::string>());
    std::vector<std::string> w;
    for (std::string x; words >> x;) w.push_back(x);
    TinyQuestion q{"what follows " + w[0] + " " + w[1] + " " + w[2] + "?", w[5],
                   doc["id"].get<std::string>()};
    std::vector<std::string> answers = {q.answer};
    answers.insert(answers.end(), extra_answers.begin(), extra_answers.end());
    nlohmann::json j = {{"question", q.question}, {"answers", answers}};
    if (gold) j["gold_passage_id"] = q.doc_id;
    qf << j.dump() << "\n";
    questions->push_back(std::move(q));
  }
  return r;
}

// Writes ROOT/NAME: a fresh knowledge encoder (`options`, init_fresh(seed, 0.3)) for the LLaMA of
// LLM_DIR over the world's encoder ROOT/encoder, with output heads large enough that a segment's
// prefix visibly moves the LLM's predictions.
inline void write_fresh_knowledge_encoder(const std::string& root, const std::string& llm_dir,
                                          const std::string& name,
                                          const KnowledgeEncoderOptions& options, uint64_t seed) {
  KnowledgeEncoder ke(
      KnowledgeEncoderConfig::for_llm(BertConfig::load(root + "/encoder/config.json"),
                                      LlamaConfig::load(llm_dir + "/config.json"),
                                      llm_fingerprint(llm_dir), options),
      torch::kFloat32);
  ke->init_fresh(seed, 0.3);
  save_knowledge_encoder(*ke, root + "/" + name, root + "/encoder/vocab.txt");
}

}  // namespace kvrag::test
