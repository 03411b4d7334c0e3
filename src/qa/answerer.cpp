// The Answerer: retrieval, knowledge encoding, prompting and generation (see answerer.h).
#include "qa/answerer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/answer_match.h"
#include "index/dense_retriever.h"
#include "index/retriever.h"
#include "index/segment_store.h"
#include "model/generation.h"
#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "prefix/prompt.h"
#include "text/knowledge_tokenizer.h"
#include "text/segmenter.h"
#include "text/tokenizer.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {

AnswerMode parse_answer_mode(const std::string& name) {
  if (name == "none") return AnswerMode::kNone;
  if (name == "context") return AnswerMode::kContext;
  if (name == "prefix") return AnswerMode::kPrefix;
  if (name == "context+prefix") return AnswerMode::kContextPrefix;
  fail("unknown answer mode '{}' (modes: none, context, prefix, context+prefix)", name);
}

std::string to_string(AnswerMode mode) {
  switch (mode) {
    case AnswerMode::kNone: return "none";
    case AnswerMode::kContext: return "context";
    case AnswerMode::kPrefix: return "prefix";
    case AnswerMode::kContextPrefix: return "context+prefix";
  }
  return "?";
}

nlohmann::json Answer::to_json() const {
  auto ev = nlohmann::json::array();
  for (const auto& e : evidence) {
    ev.push_back({{"segment_id", e.segment_id}, {"doc_id", e.doc_id}, {"title", e.title}, {"text", e.text},
                  {"score", e.score}});
  }
  return {{"answer", text},
          {"evidence", ev},
          {"groundedness",
           {{"answer_in_evidence", groundedness.answer_in_evidence},
            {"logprob_with", groundedness.logprob_with},
            {"logprob_without", groundedness.logprob_without}}},
          {"timings_ms", {{"retrieve", retrieve_ms}, {"encode", encode_ms}, {"generate", generate_ms}, {"total", total_ms}}}};
}

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

bool uses_context(AnswerMode m) { return m == AnswerMode::kContext || m == AnswerMode::kContextPrefix; }
bool uses_prefix(AnswerMode m) { return m == AnswerMode::kPrefix || m == AnswerMode::kContextPrefix; }

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// Whether the normalised answer occurs as whole words in the normalised evidence; an answer
// that normalises to nothing ("", "the", "!") never does.
bool answer_in(const std::string& normalized_answer, const std::vector<Evidence>& evidence) {
  if (normalized_answer.empty()) return false;
  const std::string needle = " " + normalized_answer + " ";
  for (const auto& e : evidence) {
    if ((" " + normalize_answer(e.title + " " + e.text) + " ").find(needle) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

struct Answerer::Impl {
  AnswererOptions options;
  LlamaForCausalLM llm{nullptr};
  std::unique_ptr<Tokenizer> tokenizer;
  std::vector<int64_t> newline_ids;  // tokens whose text contains a newline: an answer is one line

  std::unique_ptr<SegmentStore> store;
  std::unique_ptr<Bm25Retriever> bm25;
  std::unique_ptr<DenseRetriever> dense;
  std::unique_ptr<HybridRetriever> hybrid;
  Retriever* retriever = nullptr;
  std::mutex retrieve_mutex;  // retrievers keep per-call state (query encoder, statements)

  KnowledgeEncoder knowledge{nullptr};
  std::unique_ptr<WordPieceTokenizer> knowledge_vocab;
  std::unique_ptr<KnowledgeTokenizer> knowledge_tokenizer;  // cuts segments for the knowledge encoder
  int64_t segment_tokens = 0;

  // One question on its way through a call.
  struct Item {
    std::string question;
    std::vector<Evidence> evidence;  // as retrieved (top_k)
    int64_t used = 0;                // segments that go into the prefix
    std::vector<int64_t> prompt;     // the mode's prompt ids (BOS first)
    std::string reference;           // answer to score, if any
  };

  const LlamaConfig& llm_config() const { return llm->config(); }

  std::vector<int64_t> encode_prompt(const std::string& text) const {
    const auto ids = tokenizer->encode(text, true);
    return std::vector<int64_t>(ids.begin(), ids.end());
  }

  // The answer's ids as the LLM is trained to produce them after a prompt (qa/prompt.h:
  // answer_token_ids, then EOS).
  std::vector<int64_t> target_ids(const std::string& answer) const {
    const auto ids = answer_token_ids(*tokenizer, answer);
    std::vector<int64_t> out(ids.begin(), ids.end());
    const auto& eos = llm_config().eos_token_ids;
    KVRAG_CHECK(!eos.empty(), "{}: the LLM has no eos_token_id (needed to end answers)", options.llm_dir);
    out.push_back(eos.front());
    return out;
  }

  void check_question(const std::string& q, size_t i) const {
    KVRAG_CHECK(!trim(q).empty(), "question {}: empty question", i);
    const auto n = tokenizer->encode(q, false).size();
    KVRAG_CHECK(static_cast<int64_t>(n) <= options.max_question_tokens,
                "question {}: {} tokens exceeds the limit of {} (max_question_tokens)", i, n,
                options.max_question_tokens);
  }

  std::vector<std::vector<Evidence>> retrieve(const std::vector<std::string>& questions, int top_k) {
    KVRAG_CHECK(retriever != nullptr, "retrieval needs an index: none was given (--index)");
    KVRAG_CHECK(top_k >= 1, "top-k must be at least 1, not {}", top_k);
    std::vector<std::vector<ScoredSegment>> hits;
    {
      std::lock_guard<std::mutex> lock(retrieve_mutex);
      hits = retriever->search(questions, top_k);
    }
    std::vector<std::vector<Evidence>> out(questions.size());
    for (size_t i = 0; i < questions.size(); ++i) {
      std::vector<int64_t> ids;
      for (const auto& h : hits[i]) ids.push_back(h.id);
      const auto segments = store->get_many(ids);
      for (size_t j = 0; j < segments.size(); ++j) {
        out[i].push_back({hits[i][j].id, segments[j].doc_id, segments[j].title, segments[j].text, hits[i][j].score});
      }
    }
    return out;
  }

  // The prefix of `n` segments for each item of `group`: rank r of every item through the
  // knowledge encoder, ranks concatenated along P → [B, kvH, n·P, hd] per layer, LLM dtype.
  KVPrefix encode_prefix(const std::vector<Item*>& group, int64_t n) {
    const int64_t B = static_cast<int64_t>(group.size());
    std::vector<KVPrefix> per_rank;
    for (int64_t r = 0; r < n; ++r) {
      std::vector<KnowledgeTokens> tokens;
      int64_t T = 1;
      for (const Item* item : group) {
        const auto& e = item->evidence[r];
        tokens.push_back(knowledge_tokenizer->encode(e.title, e.text, segment_tokens));
        T = std::max<int64_t>(T, static_cast<int64_t>(tokens.back().ids.size()));
      }
      const bool llm_pieces = knowledge_tokenizer->reads_llm_pieces();
      auto id_tensor = torch::full({B, T}, static_cast<int64_t>(std::max(0, knowledge_vocab->pad_id())), torch::kInt64);  // [B, T]
      auto mask = torch::zeros({B, T}, torch::kInt64);                                                                    // [B, T]
      auto llm_ids = llm_pieces ? torch::full({B, T}, int64_t(-1), torch::kInt64) : torch::Tensor();                      // [B, T]
      for (int64_t b = 0; b < B; ++b) {
        const int64_t len = static_cast<int64_t>(tokens[b].ids.size());
        id_tensor[b].narrow(0, 0, len).copy_(torch::tensor(tokens[b].ids));
        mask[b].narrow(0, 0, len).fill_(1);
        if (llm_pieces) llm_ids[b].narrow(0, 0, len).copy_(torch::tensor(tokens[b].llm_ids));
      }
      per_rank.push_back(knowledge->forward(id_tensor, mask, llm_ids));
    }
    KVPrefix prefix = n == 1 ? per_rank[0] : concat_prefixes(per_rank);
    for (auto* v : {&prefix.keys, &prefix.values}) {
      for (auto& t : *v) t = t.to(llm->dtype()).contiguous();
    }
    return prefix;
  }

  // The prompt of `question` in `mode`, fitted into `budget` tokens: in the context modes the
  // lowest-ranked segments are cut (then dropped) until it fits; a prompt that cannot fit even
  // without context is an Error.
  std::vector<int64_t> fit_prompt(const std::string& question, AnswerMode mode, const std::vector<Evidence>& evidence,
                                  int64_t budget, size_t index, std::string* text_out) const {
    const std::string bare = question_prompt(question);
    auto bare_ids = encode_prompt(bare);
    KVRAG_CHECK(static_cast<int64_t>(bare_ids.size()) <= budget,
                "question {}: the prompt of {} tokens leaves no room within the LLM's {} positions (prefix and "
                "answer need the rest; budget {})",
                index, bare_ids.size(), llm_config().max_position_embeddings, budget);
    if (!uses_context(mode) || evidence.empty()) {
      if (text_out) *text_out = bare;
      return bare_ids;
    }
    std::vector<PromptPassage> passages;
    for (const auto& e : evidence) passages.push_back({e.title, e.text});
    for (int round = 0; round < 64; ++round) {
      const std::string text = context_prompt(passages, question);
      auto ids = encode_prompt(text);
      const int64_t excess = static_cast<int64_t>(ids.size()) - budget;
      if (excess <= 0) {
        if (text_out) *text_out = text;
        return ids;
      }
      if (passages.empty()) break;
      // Shorten the last passage by the excess (plus slack: re-encoding cut text may differ).
      auto& last = passages.back();
      const auto t = tokenizer->encode(last.text, false);
      const int64_t keep = static_cast<int64_t>(t.size()) - excess - 2 - round;
      if (keep < 8) {
        passages.pop_back();
        continue;
      }
      last.text = tokenizer->decode(std::vector<TokenId>(t.begin(), t.begin() + keep));
    }
    if (text_out) *text_out = bare;
    return bare_ids;
  }

  // Teacher-forced scores of targets given prompts (one row each, right-padded), with `prefix`.
  std::vector<ForcedScore> forced(const std::vector<std::vector<int64_t>>& prompts,
                                  const std::vector<std::vector<int64_t>>& targets, const KVPrefix* prefix) {
    const int64_t B = static_cast<int64_t>(prompts.size());
    int64_t T = 0;
    for (int64_t b = 0; b < B; ++b) T = std::max<int64_t>(T, prompts[b].size() + targets[b].size());
    auto ids = torch::zeros({B, T}, torch::kInt64);
    auto mask = torch::zeros({B, T}, torch::kInt64);
    std::vector<int64_t> rows, cols, labels;  // positions predicting each target token
    for (int64_t b = 0; b < B; ++b) {
      std::vector<int64_t> seq = prompts[b];
      seq.insert(seq.end(), targets[b].begin(), targets[b].end());
      const int64_t n = static_cast<int64_t>(seq.size());
      ids[b].narrow(0, 0, n).copy_(torch::tensor(seq));
      mask[b].narrow(0, 0, n).fill_(1);
      for (size_t j = 0; j < targets[b].size(); ++j) {
        rows.push_back(b);
        cols.push_back(static_cast<int64_t>(prompts[b].size() + j) - 1);
        labels.push_back(targets[b][j]);
      }
    }
    LlamaForwardArgs args;
    args.prefix = prefix;
    args.attention_mask = mask;
    const auto hidden = llm->hidden_states(ids, args);                                // [B, T, H]
    const auto picked = hidden.index({torch::tensor(rows), torch::tensor(cols)});     // [N, H]
    const auto logp = torch::log_softmax(llm->logits(picked).to(torch::kFloat32), -1);  // [N, V]
    const auto label_t = torch::tensor(labels);
    const auto token_logp = logp.gather(1, label_t.unsqueeze(1)).squeeze(1).to(torch::kFloat64);  // [N]
    const auto correct = (logp.argmax(1) == label_t).to(torch::kFloat64);                          // [N]
    const double* lp = token_logp.data_ptr<double>();
    const double* ok = correct.data_ptr<double>();
    std::vector<ForcedScore> out(B);
    size_t k = 0;
    for (int64_t b = 0; b < B; ++b) {
      const size_t n = targets[b].size();
      double sum_lp = 0, sum_ok = 0;
      for (size_t j = 0; j < n; ++j, ++k) {
        sum_lp += lp[k];
        sum_ok += ok[k];
      }
      out[b].logprob = sum_lp / static_cast<double>(n);
      out[b].token_accuracy = sum_ok / static_cast<double>(n);
    }
    return out;
  }

  // The whole pipeline. generate: produce answers (and groundedness if asked); references:
  // score these answers teacher-forced into *scores.
  std::vector<Answer> run(const std::vector<std::string>& questions, AnswerMode mode, int top_k, bool generate_answers,
                          bool groundedness, const std::vector<std::string>* references,
                          std::vector<ForcedScore>* scores) {
    torch::NoGradGuard no_grad;
    const auto t_start = Clock::now();
    const size_t n = questions.size();
    if (references != nullptr) {
      KVRAG_CHECK(references->size() == n, "{} questions but {} answers to score", n, references->size());
      for (size_t i = 0; i < n; ++i) KVRAG_CHECK(!trim((*references)[i]).empty(), "question {}: empty answer to score", i);
    }
    for (size_t i = 0; i < n; ++i) check_question(questions[i], i);
    if (mode != AnswerMode::kNone) {
      KVRAG_CHECK(retriever != nullptr, "mode {} needs an index (--index); none was given", to_string(mode));
      KVRAG_CHECK(top_k >= 1, "top-k must be at least 1, not {}", top_k);
    }
    if (uses_prefix(mode)) {
      KVRAG_CHECK(!knowledge.is_empty(), "mode {} needs a knowledge encoder (--knowledge-encoder); none was given",
                  to_string(mode));
    }

    std::vector<Answer> answers(n);
    std::vector<Item> items(n);
    for (size_t i = 0; i < n; ++i) items[i].question = questions[i];
    if (references != nullptr) {
      for (size_t i = 0; i < n; ++i) items[i].reference = (*references)[i];
      scores->assign(n, {});
    }

    double retrieve_ms = 0, encode_ms = 0, generate_ms = 0;
    if (mode != AnswerMode::kNone) {
      const auto t0 = Clock::now();
      auto evidence = retrieve(questions, top_k);
      for (size_t i = 0; i < n; ++i) {
        items[i].evidence = std::move(evidence[i]);
        if (uses_prefix(mode)) items[i].used = std::min<int64_t>(top_k, items[i].evidence.size());
      }
      retrieve_ms = ms_since(t0);
    }

    // Questions with the same number of prefix segments share a batch (one prefix length).
    std::map<int64_t, std::vector<Item*>> groups;
    for (auto& item : items) groups[item.used].push_back(&item);
    const int64_t max_pos = llm_config().max_position_embeddings;

    for (auto& [used, group] : groups) {
      const auto t0 = Clock::now();
      KVPrefix prefix;
      if (used > 0) prefix = encode_prefix(group, used);
      encode_ms += ms_since(t0);
      const KVPrefix* prefix_ptr = prefix.empty() ? nullptr : &prefix;
      const int64_t P = prefix.length();

      const auto t1 = Clock::now();
      std::vector<std::vector<int64_t>> prompts;
      for (Item* item : group) {
        const size_t index = static_cast<size_t>(item - items.data());
        int64_t room = generate_answers ? options.max_new_tokens + 1 : 0;
        if (references != nullptr) {
          room = std::max<int64_t>(room, target_ids(item->reference).size());
        }
        item->prompt = fit_prompt(item->question, mode, item->evidence, max_pos - P - room, index, nullptr);
        prompts.push_back(item->prompt);
      }
      if (!prefix.empty()) {  // the prefix's keys where the knowledge encoder wants them (key_position)
        std::vector<int64_t> prompt_lengths;
        for (const Item* item : group) prompt_lengths.push_back(static_cast<int64_t>(item->prompt.size()));
        prefix = place_for_answer(knowledge->config(), *llm, prefix, prompt_lengths);
      }

      if (references != nullptr) {
        std::vector<std::vector<int64_t>> targets;
        for (size_t b = 0; b < group.size(); ++b) targets.push_back(target_ids(group[b]->reference));
        const auto s = forced(prompts, targets, prefix_ptr);
        for (size_t b = 0; b < group.size(); ++b) (*scores)[group[b] - items.data()] = s[b];
      }

      if (generate_answers) {
        GenerationOptions g;
        g.max_new_tokens = options.max_new_tokens;
        g.stop_ids = newline_ids;
        const auto gens = generate(*llm, prompts, g, prefix_ptr);
        std::vector<std::vector<int64_t>> targets, bare_prompts, bare_targets;
        for (size_t b = 0; b < group.size(); ++b) {
          Answer& a = answers[group[b] - items.data()];
          std::string text = tokenizer->decode(std::vector<TokenId>(gens[b].tokens.begin(), gens[b].tokens.end()));
          if (const auto nl = text.find('\n'); nl != std::string::npos) text.resize(nl);
          a.text = trim(text);
          a.evidence = group[b]->evidence;
          a.groundedness.answer_in_evidence = answer_in(normalize_answer(a.text), a.evidence);
          if (groundedness) {
            targets.push_back(target_ids(a.text));
            const std::string bare = question_prompt(group[b]->question);
            bare_prompts.push_back(encode_prompt(bare));
            bare_targets.push_back(targets.back());
          }
        }
        if (groundedness) {
          const auto with = forced(prompts, targets, prefix_ptr);
          const auto without = mode == AnswerMode::kNone ? with : forced(bare_prompts, bare_targets, nullptr);
          for (size_t b = 0; b < group.size(); ++b) {
            auto& g2 = answers[group[b] - items.data()].groundedness;
            g2.logprob_with = with[b].logprob;
            g2.logprob_without = without[b].logprob;
          }
        }
      }
      generate_ms += ms_since(t1);
    }
    const double total_ms = ms_since(t_start);
    for (auto& a : answers) {
      a.retrieve_ms = retrieve_ms;
      a.encode_ms = encode_ms;
      a.generate_ms = generate_ms;
      a.total_ms = total_ms;
    }
    return answers;
  }
};

std::unique_ptr<Answerer> Answerer::open(const AnswererOptions& options) {
  namespace fs = std::filesystem;
  std::unique_ptr<Answerer> self(new Answerer());
  self->impl_ = std::make_unique<Impl>();
  Impl& im = *self->impl_;
  im.options = options;
  KVRAG_CHECK(options.dtype == "fp32" || options.dtype == "bf16", "LLM dtype must be fp32 or bf16, not '{}'",
              options.dtype);
  KVRAG_CHECK(options.max_new_tokens >= 1, "max_new_tokens must be at least 1, not {}", options.max_new_tokens);
  KVRAG_CHECK(options.max_question_tokens >= 1, "max_question_tokens must be at least 1, not {}",
              options.max_question_tokens);
  KVRAG_CHECK(!options.llm_dir.empty(), "no LLM folder given (--llm)");
  KVRAG_CHECK(fs::is_directory(options.llm_dir), "LLM folder {} does not exist", options.llm_dir);

  im.llm = load_llama(options.llm_dir, options.dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32);
  im.llm->freeze();
  im.llm->eval();
  try {
    im.tokenizer = load_tokenizer(options.llm_dir);
  } catch (Error& e) {
    throw e.with_context("LLM " + options.llm_dir);
  }
  for (int32_t id = 0; id < im.tokenizer->vocab_size(); ++id) {
    const std::string piece = im.tokenizer->id_to_piece(id);
    if (piece == "<0x0A>" || piece.find('\n') != std::string::npos) im.newline_ids.push_back(id);
  }

  if (!options.index_dir.empty()) {
    KVRAG_CHECK(fs::is_directory(options.index_dir), "index folder {} does not exist", options.index_dir);
    const std::string& mode = options.retriever_mode;
    KVRAG_CHECK(mode == "dense" || mode == "bm25" || mode == "hybrid",
                "retriever mode must be dense, bm25 or hybrid, not '{}'", mode);
    im.store = SegmentStore::open(options.index_dir + "/segments.sqlite");
    if (mode != "dense") im.bm25 = std::make_unique<Bm25Retriever>(*im.store);
    if (mode != "bm25") {
      EmbedderOptions embedder;
      embedder.dtype = "fp32";
      im.dense = DenseRetriever::open(options.index_dir, options.encoder_dir, embedder);
    }
    if (mode == "hybrid") im.hybrid = std::make_unique<HybridRetriever>(*im.dense, *im.bm25);
    im.retriever = mode == "hybrid" ? static_cast<Retriever*>(im.hybrid.get())
                   : mode == "bm25" ? static_cast<Retriever*>(im.bm25.get())
                                    : static_cast<Retriever*>(im.dense.get());
  }

  if (!options.knowledge_encoder_dir.empty()) {
    const std::string& dir = options.knowledge_encoder_dir;
    KVRAG_CHECK(fs::is_directory(dir), "knowledge encoder folder {} does not exist", dir);
    im.knowledge = load_knowledge_encoder(dir, torch::kFloat32);
    check_compatible(im.knowledge->config(), im.llm->config(), llm_fingerprint(options.llm_dir), dir);
    im.knowledge->eval();
    for (auto& p : im.knowledge->parameters()) p.set_requires_grad(false);
    const std::string vocab = dir + "/vocab.txt";
    KVRAG_CHECK(fs::exists(vocab), "knowledge encoder {}: missing vocab.txt (its WordPiece vocabulary)", dir);
    im.knowledge_vocab = WordPieceTokenizer::from_vocab_file(vocab);
    im.knowledge_tokenizer = std::make_unique<KnowledgeTokenizer>(
        *im.knowledge_vocab, im.knowledge->config().reads_llm_pieces() ? im.tokenizer.get() : nullptr);
    im.segment_tokens = im.knowledge->config().encoder.max_position_embeddings;
    if (options.max_segment_tokens > 0) im.segment_tokens = std::min<int64_t>(im.segment_tokens, options.max_segment_tokens);
    if (im.knowledge->config().token_readout()) {  // one prefix entry per token: at most P tokens
      im.segment_tokens = std::min<int64_t>(im.segment_tokens, im.knowledge->config().prefix_length);
    }
    KVRAG_CHECK(im.segment_tokens >= 2, "knowledge encoder {}: segment length {} is too small", dir, im.segment_tokens);
  }
  return self;
}

Answerer::~Answerer() = default;

std::vector<Answer> Answerer::answer(const std::vector<std::string>& questions, AnswerMode mode, int top_k,
                                     bool groundedness) const {
  return impl_->run(questions, mode, top_k, true, groundedness, nullptr, nullptr);
}

std::vector<Answerer::ForcedScore> Answerer::score_answers(const std::vector<std::string>& questions,
                                                           const std::vector<std::string>& answers, AnswerMode mode,
                                                           int top_k) const {
  std::vector<ForcedScore> scores;
  impl_->run(questions, mode, top_k, false, false, &answers, &scores);
  return scores;
}

std::vector<Answer> Answerer::answer_and_score(const std::vector<std::string>& questions,
                                               const std::vector<std::string>& references, AnswerMode mode, int top_k,
                                               bool groundedness, std::vector<ForcedScore>* scores) const {
  KVRAG_CHECK(scores != nullptr, "answer_and_score: no output for the scores");
  return impl_->run(questions, mode, top_k, true, groundedness, &references, scores);
}

std::vector<std::vector<Evidence>> Answerer::retrieve(const std::vector<std::string>& questions, int top_k) const {
  return impl_->retrieve(questions, top_k);
}

RetrievalReport Answerer::evaluate_retrieval(const std::vector<Question>& questions, const std::vector<int>& ks) const {
  KVRAG_CHECK(impl_->retriever != nullptr, "retrieval evaluation needs an index: none was given (--index)");
  std::lock_guard<std::mutex> lock(impl_->retrieve_mutex);
  return kvrag::evaluate_retrieval(*impl_->retriever, *impl_->store, questions, ks);
}

std::string Answerer::prompt_text(const std::string& question, AnswerMode mode, const std::vector<Evidence>& evidence) const {
  std::string text;
  const int64_t P = uses_prefix(mode) && !impl_->knowledge.is_empty()
                        ? impl_->knowledge->config().prefix_length * static_cast<int64_t>(evidence.size())
                        : 0;
  impl_->fit_prompt(question, mode, evidence,
                    impl_->llm_config().max_position_embeddings - P - impl_->options.max_new_tokens - 1, 0, &text);
  return text;
}

const AnswererOptions& Answerer::options() const { return impl_->options; }
bool Answerer::has_index() const { return impl_->retriever != nullptr; }
bool Answerer::has_knowledge_encoder() const { return !impl_->knowledge.is_empty(); }

}  // namespace kvrag
