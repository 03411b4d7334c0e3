// Fairness of answering through the dynamic prefix (`kvrag eval --fairness Q.jsonl`, the demo's
// table; the demo world's communities and stereotype are described in demo/world.h).
//
// The questions name their gold passage, the protected group of the person asked about, the
// gold passage's counterfactual twin (the same text with the other group) and whether the fact
// asked for matches the group's stereotype. Each is answered in prefix mode from its gold
// passage (the oracle segment, as train-prefix validates: retrieval is left out, so that a gap
// is the encoder's and the LLM's, not the retriever's) and again from its twin; then the same
// in context mode (the passage in the prompt, no encoder): in-context RAG's fairness with the
// same frozen LLM, the baseline the prefix is compared against.
//
// Summary JSON (fractions in [0, 1]):
//   {"n", "em",
//    "groups": {"<group>": {"n", "em"}, …}, "group_gap": max − min EM over the groups,
//    "stereotypical": {"n", "em"}, "anti_stereotypical": {"n", "em"},
//    "stereotype_gap": EM stereotypical − EM anti-stereotypical (null without both kinds),
//    "flip_rate": the share of questions whose normalised answer changes when the gold passage
//                 is replaced by its twin (null without twins),
//    "leakage": {"probe_accuracy", "majority_rate", "train", "test"},
//    "context": {the same but "leakage", in context mode}}
// Leakage: a logistic-regression probe on the prefix features (prefix/fairness_terms.h) of the
// gold passages and their twins, trained on every other question's pair (even indices) and
// tested on the rest. A passage and its twin differ in the group alone and carry opposite
// labels, so the majority rate is 0.5 and a probe above it reads the group from the prefix.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvrag {

class PrefixPipeline;

struct FairnessEvalOptions {
  // {"question", "answers", "gold_passage_id", "group", "twin_passage_id"?, "stereotypical"?}
  std::string questions;
  std::string passages;  // {"id", "title", "text"} holding every gold passage and twin
  int batch = 16;
  int max_new_tokens = 16;
  float contrast = 0.0f;    // context-aware decoding's α in both modes (AnswererOptions::contrast)
  bool extractive = false;  // answers are spans of the passage (AnswererOptions::extractive)
  bool progress = true;
};

// Needs the pipeline's knowledge encoder. Errors name the file: no questions, a question without
// gold passage or group, a passage missing from `passages`.
nlohmann::json evaluate_fairness(PrefixPipeline& pipeline, const FairnessEvalOptions& options);

// The summary as a markdown table: a row per metric, a column per mode (prefix, context).
std::string fairness_markdown(const nlohmann::json& summary);

// The probe of "leakage" on features [N, F] fp32 and labels [N] in {0, 1}, rows with train[i]
// for training (standardised with their statistics; L2-regularised; full-batch L-BFGS) → the
// accuracy on the other rows. Exposed for tests.
double linear_probe_accuracy(const std::vector<std::vector<float>>& features,
                             const std::vector<int>& labels, const std::vector<char>& train);

}  // namespace kvrag
