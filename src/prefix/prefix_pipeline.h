// The one pipeline from text to what the frozen LLM is given and back: prompt and target ids,
// segments cut for the knowledge encoder, the batch, the dynamic prefix, the teacher-forced
// scores and the generated answers. Training (train/prefix_trainer.h: its steps and its
// validation), answering (qa/answerer.h) and the tests all go through it, so that a knowledge
// encoder is trained, validated and used on exactly the same inputs.
//
// It owns the LLM (frozen) and its tokenizer, and, for the prefix modes, the knowledge encoder
// with its vocabulary and segment cutter (text/knowledge_tokenizer.h); the encoder's options
// (readout, segment tokenizer, key position, segment length: model/knowledge_encoder.h) are
// applied here and nowhere else. Closed-book and in-context answering need no encoder.
//
// Answers are generated as `kvrag eval` scores them and training validates them: greedy, a row
// stopped by EOS or by any token whose text holds a newline, the text cut at its first newline
// and trimmed. Torch is in this header through prefix_batch.h: include it from .cpp files.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/generation.h"
#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "prefix/prefix_batch.h"
#include "prefix/prompt.h"

namespace kvrag {

class KnowledgeTokenizer;
class Tokenizer;
class WordPieceTokenizer;

// Decoding beyond each row on its own (PrefixPipeline::generate).
struct PrefixDecoding {
  // contrast α > 0: context-aware decoding against `closed_book` (each row's bare question
  // prompt, prompt_ids(); nullptr: the batch's own prompts, which is right where the evidence is
  // in the prefix only), see GenerationOptions::contrast.
  float contrast = 0.0f;
  const std::vector<std::vector<int64_t>>* closed_book = nullptr;
  // mixture m > 1: the rows in groups of m, one question's prompt each with one of its segments'
  // prefixes, decoded from the mixture of their distributions weighted by
  // exp(mixture_log_weights[row]) (GenerationOptions::mixture); each row returns its group's
  // answer.
  int64_t mixture = 1;
  std::vector<float> mixture_log_weights;
  // extractive: each row's answer a span of its evidence, copy_from[row] (extractive_source();
  // GenerationOptions::copy_from); empty: free generation.
  std::vector<std::vector<int64_t>> copy_from;
};

class PrefixPipeline {
 public:
  // The LLaMA of LLM_DIR (config.json + safetensors) in `dtype`, frozen and in eval mode, and
  // its tokenizer (LLM_DIR/tokenizer.model). Errors name the folder.
  PrefixPipeline(const std::string& llm_dir, torch::Dtype dtype);
  ~PrefixPipeline();
  PrefixPipeline(const PrefixPipeline&) = delete;
  PrefixPipeline& operator=(const PrefixPipeline&) = delete;

  // The knowledge encoder of folder DIR (config.json, model.safetensors, vocab.txt), made for
  // this LLM (check_compatible), frozen and in eval mode.
  void load_encoder(const std::string& dir);
  // `encoder` (e.g. one being trained: left as it is) with its WordPiece vocabulary.
  void set_encoder(KnowledgeEncoder encoder, const std::string& vocab_path);

  LlamaForCausalLMImpl& llm() { return *llm_; }
  const LlamaConfig& llm_config() const { return llm_->config(); }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const std::string& llm_dir() const { return llm_dir_; }
  const std::string& llm_fingerprint() const { return fingerprint_; }
  bool has_encoder() const { return !encoder_.is_empty(); }
  KnowledgeEncoderImpl& encoder();  // Error without one
  int64_t max_positions() const { return llm_->config().max_position_embeddings; }
  // Prefix entries the LLM attends to for `k` segments per question: k·P (0 without encoder).
  int64_t prefix_entries(int64_t k) const;
  // LLM positions those entries take before the prompt: 0 where the encoder places its keys
  // (key_position "answer", llama.h), else k·P. Budgets of the LLM's context count these.
  int64_t prefix_positions(int64_t k) const;

  // --- text → ids ------------------------------------------------------------------------------
  // BOS + question_prompt(question).
  std::vector<int64_t> prompt_ids(const std::string& question) const;
  // BOS + context_prompt(passages, question) within `budget` tokens: the lowest-ranked passages
  // are shortened, then dropped, until it fits; without passages the bare question prompt. An
  // Error names question `index` when not even the bare prompt fits. *text gets the prompt's text.
  std::vector<int64_t> fit_prompt(const std::string& question, std::vector<PromptPassage> passages,
                                  int64_t budget, size_t index, std::string* text = nullptr) const;
  // answer_token_ids(answer) + EOS: what the LLM is trained to write after a prompt.
  std::vector<int64_t> target_ids(const std::string& answer) const;
  // The LLM's tokens of `passages` (each title, then each text, as the LLM cuts them) separated
  // by -1: what an extractive answer may copy a span of (PrefixDecoding::copy_from).
  std::vector<int64_t> extractive_source(const std::vector<PromptPassage>& passages) const;
  // A segment as the encoder reads it, at most its segment length (model/knowledge_encoder.h).
  KnowledgeTokens segment_tokens(const PromptPassage& segment) const;

  // A training example: the question's prompt, the answer's target and the segments. Errors
  // (prefixed by `where`, e.g. "FILE: question 3"): an empty answer, or prompt + answer + the
  // segments' prefix beyond the LLM's positions.
  PrefixExample example(const std::string& question, const std::string& answer,
                        const std::vector<PromptPassage>& segments, const std::string& where) const;

  // --- batches (prefix_batch.h) ------------------------------------------------------------------
  PrefixBatch batch(const std::vector<PrefixExample>& examples,
                    const std::vector<int64_t>& rows) const;
  // The batch's prefix from this pipeline's encoder; empty for a batch without segments.
  KVPrefix prefix(const PrefixBatch& batch);
  // The encoder's output for each segment, as a prefix store keeps it (not placed, not cast):
  // keys/values [B, kvH, P, hd] per layer, B = segments.size().
  KVPrefix encode_segments(const std::vector<KnowledgeTokens>& segments);
  // The batch's prefix from prefixes made elsewhere (a store): per_rank[r] holds rank r of every
  // row, as encode_segments makes it; placed for the batch's prompts as prefix() places its own.
  KVPrefix prefix_from(const std::vector<KVPrefix>& per_rank, const PrefixBatch& batch);
  // The loaded encoder folder's fingerprint (knowledge_encoder_fingerprint); "" for an encoder
  // given by set_encoder.
  const std::string& encoder_fingerprint() const { return encoder_fingerprint_; }
  torch::Tensor loss(const PrefixBatch& batch, const KVPrefix& prefix);
  // Teacher-forced scores of each row's target (answer_scores, prefix_batch.h). citations
  // (optional, inference only): also, from the same forward, per row the answer's attention on
  // each of the `segments` segments whose prefixes make up `prefix` (prefix_attention).
  std::vector<ForcedScore> scores(const PrefixBatch& batch, const KVPrefix& prefix,
                                  std::vector<std::vector<double>>* citations = nullptr,
                                  int64_t segments = 0);
  // The answer to each row's prompt (greedy, at most max_new_tokens; see above), decoded as
  // `decoding` says. stats (optional): the time split (model/generation.h).
  std::vector<std::string> generate(const PrefixBatch& batch, const KVPrefix& prefix,
                                    int max_new_tokens, GenerationStats* stats = nullptr,
                                    const PrefixDecoding& decoding = {});

 private:
  std::string llm_dir_, fingerprint_, encoder_fingerprint_;
  LlamaForCausalLM llm_{nullptr};
  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<int64_t> newline_ids_;  // tokens whose text holds a newline: an answer is one line
  KnowledgeEncoder encoder_{nullptr};
  std::unique_ptr<WordPieceTokenizer> encoder_vocab_;
  std::unique_ptr<KnowledgeTokenizer> segment_cutter_;
  int64_t encoder_pad_ = 0;
};

}  // namespace kvrag
