#include "prefix/prefix_pipeline.h"

#include <algorithm>
#include <filesystem>

#include "checkpoint/model_folder.h"
#include "core/error.h"
#include "model/generation.h"
#include "text/knowledge_tokenizer.h"
#include "text/tokenizer.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

PrefixPipeline::PrefixPipeline(const std::string& llm_dir, torch::Dtype dtype) : llm_dir_(llm_dir) {
  KVRAG_CHECK(!llm_dir.empty(), "no LLM folder given (--llm)");
  KVRAG_CHECK(std::filesystem::is_directory(llm_dir), "LLM folder {} does not exist", llm_dir);
  check_model_folder(llm_dir, {ModelFolder::kLlama}, "--llm");
  llm_ = load_llama(llm_dir, dtype);
  llm_->freeze();
  llm_->eval();
  try {
    tokenizer_ = load_tokenizer(llm_dir);
  } catch (Error& e) {
    throw e.with_context("LLM " + llm_dir);
  }
  KVRAG_CHECK(!llm_->config().eos_token_ids.empty() || tokenizer_->eos_id() >= 0,
              "{}: the LLM has no EOS token (needed to end answers)", llm_dir);
  fingerprint_ = kvrag::llm_fingerprint(llm_dir);
  for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id) {
    const std::string piece = tokenizer_->id_to_piece(id);
    if (piece == "<0x0A>" || piece.find('\n') != std::string::npos) newline_ids_.push_back(id);
  }
}

PrefixPipeline::~PrefixPipeline() = default;

void PrefixPipeline::load_encoder(const std::string& dir) {
  KVRAG_CHECK(std::filesystem::is_directory(dir), "knowledge encoder folder {} does not exist",
              dir);
  check_model_folder(dir, {ModelFolder::kKnowledgeEncoder}, "--knowledge-encoder");
  auto encoder = load_knowledge_encoder(dir, torch::kFloat32);
  check_compatible(encoder->config(), llm_->config(), fingerprint_, dir);
  encoder->eval();
  for (auto& p : encoder->parameters()) p.set_requires_grad(false);
  const std::string vocab = dir + "/vocab.txt";
  KVRAG_CHECK(std::filesystem::exists(vocab),
              "knowledge encoder {}: missing vocab.txt (its WordPiece vocabulary)", dir);
  set_encoder(encoder, vocab);
  encoder_fingerprint_ = knowledge_encoder_fingerprint(dir);
}

void PrefixPipeline::set_encoder(KnowledgeEncoder encoder, const std::string& vocab_path) {
  auto vocab = WordPieceTokenizer::from_vocab_file(vocab_path);
  const auto& config = encoder->config();
  KVRAG_CHECK(vocab->vocab_size() <= config.encoder.vocab_size,
              "{} has {} tokens, the knowledge encoder's vocab_size is {}", vocab_path,
              vocab->vocab_size(), config.encoder.vocab_size);
  KVRAG_CHECK(config.segment_limit() >= 2,
              "knowledge encoder: a segment limit of {} tokens is too small",
              config.segment_limit());
  segment_cutter_ = std::make_unique<KnowledgeTokenizer>(
      *vocab, config.reads_llm_pieces() ? tokenizer_.get() : nullptr);
  encoder_pad_ = std::max(0, vocab->pad_id());
  encoder_vocab_ = std::move(vocab);
  encoder_ = std::move(encoder);
  encoder_fingerprint_.clear();
}

KnowledgeEncoderImpl& PrefixPipeline::encoder() {
  KVRAG_CHECK(has_encoder(), "no knowledge encoder loaded (--knowledge-encoder)");
  return *encoder_;
}

int64_t PrefixPipeline::prefix_entries(int64_t k) const {
  return has_encoder() ? k * encoder_->config().prefix_length : 0;
}

int64_t PrefixPipeline::prefix_positions(int64_t k) const {
  if (!has_encoder() || encoder_->config().key_position == KeyPosition::kAnswer) return 0;
  return prefix_entries(k);
}

// --- text → ids --------------------------------------------------------------------------------

std::vector<int64_t> PrefixPipeline::prompt_ids(const std::string& question) const {
  const auto ids = tokenizer_->encode(question_prompt(question), true);
  return std::vector<int64_t>(ids.begin(), ids.end());
}

std::vector<int64_t> PrefixPipeline::fit_prompt(const std::string& question,
                                                std::vector<PromptPassage> passages, int64_t budget,
                                                size_t index, std::string* text_out) const {
  const std::string bare = question_prompt(question);
  const auto bare_ids = prompt_ids(question);
  KVRAG_CHECK_INPUT(
      static_cast<int64_t>(bare_ids.size()) <= budget,
      "question {}: the prompt of {} tokens leaves no room within the LLM's {} positions "
      "(prefix and answer need the rest; budget {})",
      index, bare_ids.size(), max_positions(), budget);
  for (int round = 0; round < 64 && !passages.empty(); ++round) {
    const std::string text = context_prompt(passages, question);
    const auto ids = tokenizer_->encode(text, true);
    const int64_t excess = static_cast<int64_t>(ids.size()) - budget;
    if (excess <= 0) {
      if (text_out) *text_out = text;
      return std::vector<int64_t>(ids.begin(), ids.end());
    }
    // Shorten the last passage by the excess (plus slack: re-encoding cut text may differ).
    auto& last = passages.back();
    const auto t = tokenizer_->encode(last.text, false);
    const int64_t keep = static_cast<int64_t>(t.size()) - excess - 2 - round;
    if (keep < 8) {
      passages.pop_back();
      continue;
    }
    last.text = tokenizer_->decode(std::vector<TokenId>(t.begin(), t.begin() + keep));
  }
  if (text_out) *text_out = bare;
  return bare_ids;
}

std::vector<int64_t> PrefixPipeline::target_ids(const std::string& answer) const {
  const auto ids = answer_token_ids(*tokenizer_, answer);
  std::vector<int64_t> out(ids.begin(), ids.end());
  const auto& eos = llm_->config().eos_token_ids;
  out.push_back(eos.empty() ? tokenizer_->eos_id() : eos.front());
  return out;
}

KnowledgeTokens PrefixPipeline::segment_tokens(const PromptPassage& segment) const {
  KVRAG_CHECK(has_encoder(), "cutting a segment needs a knowledge encoder (--knowledge-encoder)");
  return segment_cutter_->encode(segment.title, segment.text, encoder_->config().segment_limit());
}

PrefixExample PrefixPipeline::example(const std::string& question, const std::string& answer,
                                      const std::vector<PromptPassage>& segments,
                                      const std::string& where) const {
  KVRAG_CHECK(!trim(answer_target(answer)).empty(), "{}: empty answer (question \"{}\")", where,
              question);
  PrefixExample ex;
  ex.prompt = prompt_ids(question);
  ex.target = target_ids(answer);
  KVRAG_CHECK(ex.target.size() > 1, "{}: the answer \"{}\" has no tokens", where, answer);
  const int64_t entries = prefix_positions(static_cast<int64_t>(segments.size()));
  // The LLM sees prompt + target[:-1] after the prefix entries (placed ones take no positions).
  const int64_t length = entries + static_cast<int64_t>(ex.prompt.size() + ex.target.size()) - 1;
  KVRAG_CHECK(length <= max_positions(),
              "{}: question and answer take {} tokens after a prefix of {}: {} in all, beyond the "
              "LLM's {} positions (shorten the question/answer or the prefix)",
              where, ex.prompt.size() + ex.target.size() - 1, entries, length, max_positions());
  for (const auto& s : segments) ex.segments.push_back(segment_tokens(s));
  return ex;
}

// --- batches -----------------------------------------------------------------------------------

PrefixBatch PrefixPipeline::batch(const std::vector<PrefixExample>& examples,
                                  const std::vector<int64_t>& rows) const {
  return make_prefix_batch(examples, rows, encoder_pad_);
}

KVPrefix PrefixPipeline::prefix(const PrefixBatch& batch) {
  if (batch.segments() == 0) return {};
  return batch_prefix(encoder(), *llm_, batch);
}

KVPrefix PrefixPipeline::encode_segments(const std::vector<KnowledgeTokens>& segments) {
  KVRAG_CHECK(!segments.empty(), "encode_segments: no segments");
  std::vector<PrefixExample> examples(segments.size());
  std::vector<int64_t> rows(segments.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    examples[i].prompt = {0};  // make_prefix_batch wants one; the encoder reads only segments
    examples[i].segments = {segments[i]};
    rows[i] = static_cast<int64_t>(i);
  }
  const PrefixBatch b = batch(examples, rows);
  return encoder().forward(b.segment_ids[0], b.segment_mask[0], b.segment_llm_ids[0]);
}

KVPrefix PrefixPipeline::prefix_from(const std::vector<KVPrefix>& per_rank,
                                     const PrefixBatch& batch) {
  return finish_prefix(encoder().config(), *llm_, per_rank, batch.prompt_lengths);
}

torch::Tensor PrefixPipeline::loss(const PrefixBatch& batch, const KVPrefix& prefix) {
  return answer_loss(*llm_, batch, &prefix);
}

std::vector<ForcedScore> PrefixPipeline::scores(const PrefixBatch& batch, const KVPrefix& prefix,
                                                std::vector<std::vector<double>>* citations,
                                                int64_t segments) {
  if (citations == nullptr) return answer_scores(*llm_, batch, &prefix);
  check_citable(prefix, segments);
  std::vector<torch::Tensor> probs;  // per layer [B, H, T, S] fp32
  const auto out = answer_scores(*llm_, batch, &prefix, &probs);
  const auto mass = prefix_attention(probs, batch, prefix, segments).contiguous();  // [B, k]
  const double* m = mass.data_ptr<double>();
  citations->assign(batch.size(), {});
  for (int64_t b = 0; b < batch.size(); ++b)
    (*citations)[b].assign(m + b * segments, m + (b + 1) * segments);
  return out;
}

std::vector<int64_t> PrefixPipeline::extractive_source(
    const std::vector<PromptPassage>& passages) const {
  std::vector<int64_t> out;
  for (const auto& p : passages) {
    for (const auto* text : {&p.title, &p.text}) {
      if (!out.empty()) out.push_back(-1);
      for (const auto id : tokenizer_->encode(*text, false)) out.push_back(id);
    }
  }
  return out;
}

std::vector<std::string> PrefixPipeline::generate(const PrefixBatch& batch, const KVPrefix& prefix,
                                                  int max_new_tokens, GenerationStats* stats,
                                                  const PrefixDecoding& decoding) {
  GenerationOptions options;
  options.max_new_tokens = max_new_tokens;
  options.stop_ids = newline_ids_;
  if (decoding.contrast > 0.0f) {
    options.contrast = decoding.contrast;
    options.contrast_prompts =
        decoding.closed_book != nullptr ? *decoding.closed_book : batch.prompts;
  }
  options.mixture = decoding.mixture;
  options.mixture_log_weights = decoding.mixture_log_weights;
  options.copy_from = decoding.copy_from;
  const auto generations =
      kvrag::generate(*llm_, batch.prompts, options, prefix.empty() ? nullptr : &prefix, stats);
  std::vector<std::string> out;
  for (const auto& g : generations) {
    std::string text = tokenizer_->decode(std::vector<TokenId>(g.tokens.begin(), g.tokens.end()));
    if (const auto nl = text.find('\n'); nl != std::string::npos) text.resize(nl);
    out.push_back(trim(text));
  }
  return out;
}

}  // namespace kvrag
