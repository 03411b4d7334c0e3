// Answering questions: retrieve → (encode the segments into a dynamic prefix) → generate with
// the frozen LLM. One Answerer is shared read-only by the CLI (ask, eval), the web service and
// the demo; answer() is thread-safe. Torch stays behind this header.
//
// Modes:
//   none            closed-book: question prompt only
//   context         in-context RAG: the top-k segments' text in the prompt
//   prefix          dynamic prefix: the top-k segments through the knowledge encoder, prompt
//                   without context
//   context+prefix  both
//   auto            prefix first; where that answer's groundedness score (Groundedness::score)
//                   falls under the prefix mode's flag threshold (AnswererOptions::flag_below,
//                   calibrated on dev), answered again in context mode (Answer::answered_by)
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/enum_names.h"
#include "index/index_retriever.h"
#include "index/retrieval_eval.h"
#include "index/retrieval_posterior.h"
#include "prefix/forced_score.h"
#include "prefix/prefix_cache_stats.h"

namespace kvrag {

class PrefixPipeline;

enum class AnswerMode { kNone, kContext, kPrefix, kContextPrefix, kAuto };
template <>
struct EnumNames<AnswerMode> {
  static constexpr const char* what = "answer mode";
  static constexpr EnumName<AnswerMode> values[] = {{AnswerMode::kNone, "none"},
                                                    {AnswerMode::kContext, "context"},
                                                    {AnswerMode::kPrefix, "prefix"},
                                                    {AnswerMode::kContextPrefix, "context+prefix"},
                                                    {AnswerMode::kAuto, "auto"}};
};
inline AnswerMode parse_answer_mode(const std::string& name) {
  return parse_enum<AnswerMode>(name);
}
inline std::string to_string(AnswerMode mode) { return enum_name(mode); }
// What a mode gives the LLM: the segments in the prompt, as a prefix; every mode but none
// retrieves. auto may do either (prefix first: it needs what prefix needs).
inline bool uses_context(AnswerMode m) {
  return m == AnswerMode::kContext || m == AnswerMode::kContextPrefix || m == AnswerMode::kAuto;
}
inline bool uses_prefix(AnswerMode m) {
  return m == AnswerMode::kPrefix || m == AnswerMode::kContextPrefix || m == AnswerMode::kAuto;
}
inline bool uses_index(AnswerMode m) { return m != AnswerMode::kNone; }

// How the prefix modes give the LLM top-k > 1 segments.
//   concat   every segment's entries in one prefix the LLM attends over (the encoder's training
//            layout where it was trained at that k)
//   mixture  one prefix per segment, answered by the mixture of the LLM's next-token
//            distributions, each weighted by its segment's retrieval posterior softmax(q·d / τ)
//            (RAG-Token; GenerationOptions::mixture): every segment is read as the encoder was
//            trained at top-1, and the retriever decides how much each one counts
//   auto     concat up to the top-k the knowledge encoder was trained with (its
//            train_report.json; unknown: any), mixture beyond it; concat with contrast decoding.
//            On the demo (encoder trained at top-1), test EM at top-5: concat 0.133, mixture
//            0.687 (README "Answering")
enum class PrefixCombine { kAuto, kConcat, kMixture };
template <>
struct EnumNames<PrefixCombine> {
  static constexpr const char* what = "prefix combination";
  static constexpr EnumName<PrefixCombine> values[] = {{PrefixCombine::kAuto, "auto"},
                                                       {PrefixCombine::kConcat, "concat"},
                                                       {PrefixCombine::kMixture, "mixture"}};
};

struct AnswererOptions {
  // LLaMA checkpoint folder with its tokenizer (tokenizer.model)
  std::string llm_dir;
  std::string knowledge_encoder_dir;  // needed for the prefix modes
  std::string index_dir;              // needed for every mode but none
  RetrieverSpec retriever;            // mode, question encoder, dtype (index/index_retriever.h)
  std::string dtype = "fp32";         // LLM dtype: fp32 | bf16 | int8 (parse_model_dtype)
  int max_new_tokens = 32;
  int max_question_tokens = 256;  // longer questions are an Error
  // Prefix modes: read the segments' prefixes from the index folder's prefix store
  // (prefix/prefix_store.h) where it was built by this knowledge encoder for this LLM, instead of
  // encoding them for every question; false: always encode.
  bool use_prefix_store = true;
  // Without a usable store: keep up to this many MiB of segments' prefixes (least recently used
  // leave first), so that a segment retrieved again is not encoded again. 0: no cache.
  int64_t prefix_cache_mb = 0;
  // Prefix modes: cite each evidence segment by the attention the answer paid to its prefix
  // entries (Answer::citations; a teacher-forced pass over prompt + answer, the one groundedness
  // scores the answer with when both are on).
  bool citations = false;
  // Per answering mode, the groundedness score (Groundedness::score) under which an answer is
  // flagged as likely wrong (Answer::flagged): calibrated on dev questions by `kvrag eval
  // --calibrate-on` and recorded in the workspace's answer_defaults.json. auto falls back to
  // context where the prefix answer is flagged: it needs flag_below[prefix].
  std::map<AnswerMode, double> flag_below;
  // Answer "unknown" (Answer::abstained) where the score is under this; -inf: never. Computes
  // groundedness whether asked or not.
  double abstain_below = -std::numeric_limits<double>::infinity();
  // The debiasing layer on the LLM's output: context-aware decoding with this α in every mode
  // that gives evidence (GenerationOptions::contrast; the closed-book question prompt is the
  // contrast). 0: plain greedy decoding.
  float contrast = 0.0f;
  // Prefix modes at top-k > 1 (PrefixCombine). mixture weighs each segment by the retrieval
  // posterior p(z | q) (index/retrieval_posterior.h) over the segments retrieved: by default a
  // softmax of the dense inner products q·d at temperature 0.05, what train-retriever's InfoNCE
  // and train-query-encoder's marginal train them for; `kvrag eval --calibrate-on` and the demo
  // fit dense and BM25 weights on dev questions instead (answer_defaults.json). A score the
  // index lacks (dense vectors) is left out. Not with contrast.
  PrefixCombine combine = PrefixCombine::kAuto;
  RetrievalPosterior posterior;
  // Extractive answers: in every mode that gives evidence, the answer is a contiguous span of
  // the evidence segments' tokens (titles and texts), the LLM choosing which
  // (GenerationOptions::copy_from). For extractive questions (the demo's; most of NQ's) it
  // keeps a reading that starts right from drifting off the span.
  bool extractive = false;
};

struct Groundedness {
  bool answer_in_evidence = false;  // the normalised answer occurs in an evidence segment
  // mean log-probability per answer token, with the evidence (the mode's input)
  double logprob_with = 0;
  double logprob_without = 0;  // the same, closed-book
  bool scored = false;         // the two log-probabilities were computed

  // The groundedness score, defined here and nowhere else: answer_in_evidence (1 or 0) plus
  // logprob_with; higher = better supported. The flag, abstention, auto mode and eval's AUROC
  // all use it. Chosen by AUROC at telling wrong answers from right ones on the demo's 100 dev
  // questions (README, "Hallucination"): 0.94 in context mode and 0.78 in prefix mode, against
  // 0.81 and 0.24 for the gain logprob_with - logprob_without (in prefix mode the wrong answers
  // gain more: the prefix makes the wrong segment's name likely) and 0.85 / 0.77 for
  // logprob_with alone. The mean log-probability of an answer is rarely under -1, so the
  // answers found in the evidence mostly rank above the others.
  double gain() const { return logprob_with - logprob_without; }
  double score() const { return (answer_in_evidence ? 1.0 : 0.0) + logprob_with; }
};

struct Answer {
  std::string text;
  std::vector<Evidence> evidence;  // empty for mode none
  Groundedness groundedness;
  // Wall time of the call that produced this answer, split by stage (a batch shares its times).
  // generate_ms includes the teacher-forced groundedness passes.
  // encode_ms: encoding the segments, or reading their prefixes from the store. prefill_ms and
  // decode_ms split the generation (generate_ms also holds the groundedness passes); ttft_ms =
  // retrieve + encode + prefill: the time to the first answer token.
  double retrieve_ms = 0, encode_ms = 0, generate_ms = 0, total_ms = 0;
  double prefill_ms = 0, decode_ms = 0, ttft_ms = 0;
  int64_t prefill_tokens = 0;  // prompt tokens the LLM read for this question (BOS included)
  // Where the prefix came from in the prefix modes: "store", "cache" (the cache, encoding the
  // segments it lacked) or "encoder"; "" in the others.
  std::string prefix_source;
  // With AnswererOptions::citations, in the prefix modes: per evidence segment (rank order), the
  // attention mass the answer's tokens put on its prefix entries, averaged over every layer, head
  // and answer token (prefix/prefix_batch.h prefix_attention); empty otherwise. Their sum is the
  // prefix's share of the answer's attention; the largest names the segment the answer came from.
  std::vector<double> citations;
  // The mode whose pass produced `text`: the mode asked, or in auto "prefix" or "context".
  std::string answered_by;
  // Groundedness score under AnswererOptions::flag_below[answered_by]: likely wrong. nullopt
  // where no threshold applies or groundedness was not computed.
  std::optional<bool> flagged;
  // Score under AnswererOptions::abstain_below: `text` is "unknown" and the answer the LLM gave
  // is kept in `withheld`.
  bool abstained = false;
  std::string withheld;
  // The answer as generated, abstained or not.
  const std::string& generated() const { return abstained ? withheld : text; }
  // {"answer", "evidence": [{"segment_id","doc_id","title","text","score"[,"attention"]}],
  //  "groundedness": {"answer_in_evidence","logprob_with","logprob_without","score"},
  //  "answered_by": mode, "flagged" (where a threshold applies),
  //  "abstained" and "withheld_answer" (where it abstained),
  //  "timings_ms": {"retrieve","encode","prefill","decode","generate","ttft","total"},
  //  "prefill_tokens",
  //  "prefix_source": "store" | "cache" | "encoder" (prefix modes only),
  //  "cited": index of the most-attended evidence segment (with citations)}
  nlohmann::json to_json() const;
};

class Answerer {
 public:
  // Loads the LLM, the knowledge encoder (if given) and the index's retriever: `retriever`
  // where the caller shares one (serve: its /v1/search uses the same), else opened from
  // options.index_dir (if given) with options.retriever.
  static std::unique_ptr<Answerer> open(const AnswererOptions& options,
                                        std::shared_ptr<IndexRetriever> retriever = nullptr);
  ~Answerer();

  // Answers a batch of questions in `mode` with the top_k segments (ignored for none).
  // groundedness: compute the likelihood signal (two extra teacher-forced passes; always in
  // auto, and where abstain_below is set). auto: the timings of an answer given in context add
  // both passes (its TTFT: the whole prefix pass, then the context pass's TTFT).
  std::vector<Answer> answer(const std::vector<std::string>& questions, AnswerMode mode, int top_k,
                             bool groundedness = true) const;

  // Teacher-forced answer-token accuracy and mean log-probability of `answers` given the
  // questions in `mode` (evaluation); evidence as answer() would retrieve it.
  using ForcedScore = kvrag::ForcedScore;  // token accuracy and mean log-probability
  std::vector<ForcedScore> score_answers(const std::vector<std::string>& questions,
                                         const std::vector<std::string>& answers, AnswerMode mode,
                                         int top_k) const;

  // answer() and score_answers() of `references` in one pass, retrieving and encoding once
  // (evaluation). scores receives one ForcedScore per question.
  std::vector<Answer> answer_and_score(const std::vector<std::string>& questions,
                                       const std::vector<std::string>& references, AnswerMode mode,
                                       int top_k, bool groundedness,
                                       std::vector<ForcedScore>* scores) const;

  // The top-k segments of each question as answer() sees them (Error without an index).
  std::vector<std::vector<Evidence>> retrieve(const std::vector<std::string>& questions,
                                              int top_k) const;
  // Retrieval top-k accuracy of the Answerer's retriever (index/retrieval_eval.h).
  RetrievalReport evaluate_retrieval(const std::vector<Question>& questions,
                                     const std::vector<int>& ks) const;

  // The prompt text the LLM receives for `question` in `mode` with `evidence` (context modes put
  // the segments in, truncated to fit the LLM's context; see answer()).
  std::string prompt_text(const std::string& question, AnswerMode mode,
                          const std::vector<Evidence>& evidence) const;

  // The tokens of the bare prompt of `question` (BOS + question_prompt: no segments).
  int64_t prompt_tokens(const std::string& question) const;
  // The largest top_k, at most `cap`, with which a question whose bare prompt has `prompt_tokens`
  // tokens is answered in `mode` within the LLM's positions, max_new_tokens + 1 left for the
  // answer: the prefix modes take P prefix entries per segment; none and context take any top_k
  // (context shortens and drops segments to fit), so `cap`. 0 where nothing fits: not one segment's
  // prefix, or not even the bare prompt.
  int max_top_k(AnswerMode mode, int cap, int64_t prompt_tokens) const;

  const AnswererOptions& options() const;
  // The LLM (and knowledge encoder) behind the answers, for evaluations that drive it directly
  // (qa/fairness_eval.h). Not thread-safe: not while answer() runs elsewhere.
  PrefixPipeline& pipeline() const;

  // Sets the flag thresholds (a calibration made after opening); before answering concurrently.
  void set_flag_below(const std::map<AnswerMode, double>& thresholds);
  // Sets the mixture's retrieval posterior (a calibration made after opening), likewise.
  void set_posterior(const RetrievalPosterior& posterior);
  bool has_index() const;
  IndexRetriever* retriever() const;  // nullptr without an index
  bool has_knowledge_encoder() const;
  // The top-k the knowledge encoder was trained with (its train_report.json, written by
  // train-prefix), read when opened; nullopt without an encoder or a readable report.
  std::optional<int> trained_top_k() const;
  // Whether the prefix modes read the index's prefix store, and why not where they do not
  // ("no prefix store in DIR", "… built by another knowledge encoder: …").
  bool uses_prefix_store() const;
  const std::string& prefix_store_status() const;
  // The prefix cache's counts; nullopt without one (no prefix_cache_mb, or a store is used).
  std::optional<PrefixCacheStats> prefix_cache_stats() const;

 private:
  Answerer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvrag
