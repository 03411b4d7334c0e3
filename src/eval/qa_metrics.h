// Answer-level metrics of open-domain QA (SQuAD's evaluation script, as used by DPR, FiD, RAG):
// a generated answer is compared with every gold answer after normalize_answer
// (eval/answer_match.h: lowercase, no punctuation, no articles, single spaces) and the best
// score over the gold answers counts.
#pragma once

#include <string>
#include <vector>

namespace kvrag {

// 1 if the normalised prediction equals some normalised gold answer, else 0.
double exact_match(const std::string& prediction, const std::vector<std::string>& answers);

// SQuAD's token F1: the normalised texts split at spaces, the overlap counted as a multiset;
// F1 = 2PR / (P + R), 0 without overlap. Where the prediction or a gold answer normalises to no
// tokens at all, F1 is 1 if both do and 0 otherwise (SQuAD 2.0's rule). Max over gold answers.
double token_f1(const std::string& prediction, const std::vector<std::string>& answers);

// 1 if some normalised gold answer (with at least one token) occurs in the normalised
// prediction as a sequence of whole words ("paris" in "paris france", not in "parisian"),
// else 0. Lenient where generation runs on past the answer.
double answer_contained(const std::string& prediction, const std::vector<std::string>& answers);

struct AnswerScores {
  double em = 0, f1 = 0, contained = 0;
};
// All three at once (each gold answer is normalised once). No gold answers: all 0.
AnswerScores score_answer(const std::string& prediction, const std::vector<std::string>& answers);

}  // namespace kvrag
