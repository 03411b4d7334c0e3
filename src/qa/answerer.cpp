// The Answerer: retrieval, then the prefix pipeline (prefix/prefix_pipeline.h) for prompts,
// prefixes, scores and generation (see answerer.h).
#include "qa/answerer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/atomic_file.h"
#include "core/error.h"
#include "eval/answer_match.h"
#include "prefix/prefix_cache.h"
#include "prefix/prefix_pipeline.h"
#include "prefix/prefix_store.h"
#include "text/tokenizer.h"

namespace kvrag {

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

// Whether the normalised answer occurs as whole words in the normalised evidence; an answer
// that normalises to nothing ("", "the", "!") never does.
bool answer_in(const std::string& normalized_answer, const std::vector<Evidence>& evidence) {
  if (normalized_answer.empty()) return false;
  const std::string needle = " " + normalized_answer + " ";
  for (const auto& e : evidence) {
    if ((" " + normalize_answer(e.title + " " + e.text) + " ").find(needle) != std::string::npos)
      return true;
  }
  return false;
}

std::vector<PromptPassage> passages_of(const std::vector<Evidence>& evidence, size_t n) {
  std::vector<PromptPassage> out;
  for (size_t i = 0; i < std::min(n, evidence.size()); ++i)
    out.push_back({evidence[i].title, evidence[i].text});
  return out;
}

// A question's teacher-forced score under the mixture of its m rows (one segment each, log
// prior weights `log_w`), for an answer of `tokens` tokens: the sequence's log-likelihood
// log Σ_z w_z p(y | q, z) per token, token accuracy averaged under the posterior p(z | q, y),
// which goes to *posterior. (The sequence-level mixture: the answer is decoded token by token
// from the token-level one, RAG-Token; both agree where one segment dominates.)
ForcedScore mix_scores(const std::vector<ForcedScore>& rows, const std::vector<float>& log_w,
                       double tokens, std::vector<double>* posterior) {
  std::vector<double> joint(rows.size());
  double top = -std::numeric_limits<double>::infinity();
  for (size_t r = 0; r < rows.size(); ++r) {
    joint[r] = log_w[r] + rows[r].logprob * tokens;
    top = std::max(top, joint[r]);
  }
  double sum = 0;
  for (const double j : joint) sum += std::exp(j - top);
  const double log_likelihood = top + std::log(sum);
  ForcedScore out;
  out.logprob = tokens > 0 ? log_likelihood / tokens : 0.0;
  posterior->resize(rows.size());
  for (size_t r = 0; r < rows.size(); ++r) {
    (*posterior)[r] = std::exp(joint[r] - log_likelihood);
    out.token_accuracy += (*posterior)[r] * rows[r].token_accuracy;
  }
  return out;
}

// The top-k a knowledge encoder was trained with (Answerer::trained_top_k).
std::optional<int> read_trained_top_k(const std::string& knowledge_encoder_dir) {
  if (knowledge_encoder_dir.empty()) return std::nullopt;
  const auto path = std::filesystem::path(knowledge_encoder_dir) / "train_report.json";
  if (!std::filesystem::exists(path)) return std::nullopt;
  const auto j = nlohmann::json::parse(read_file(path.string()), nullptr, false);
  if (!j.is_object() || !j.contains("top_k") || !j["top_k"].is_number_integer() ||
      j["top_k"].get<int64_t>() < 1)
    return std::nullopt;
  return static_cast<int>(std::min<int64_t>(j["top_k"].get<int64_t>(), 10000));
}

}  // namespace

struct Answerer::Impl {
  AnswererOptions options;
  std::unique_ptr<PrefixPipeline> pipeline;
  std::shared_ptr<IndexRetriever> retriever;
  std::unique_ptr<PrefixStore> prefix_store;  // null: encode (or take from the cache)
  std::string prefix_store_status;
  std::unique_ptr<PrefixCache> prefix_cache;  // without a store, where options ask for one
  std::optional<int> trained_k;               // the knowledge encoder's training top-k

  // Whether `used` > 1 segments per question are mixed rather than concatenated.
  bool mixes(int64_t used) const {
    switch (options.combine) {
      case PrefixCombine::kConcat:
        return false;
      case PrefixCombine::kMixture:
        return used > 1;
      case PrefixCombine::kAuto:
        return used > 1 && options.contrast <= 0.0f && trained_k && used > *trained_k;
    }
    return false;
  }

  // The prefixes of the segments (one row each, in order), as the encoder makes them: from the
  // store, else from the cache, encoding (and caching) those it lacks.
  KVPrefix segment_prefixes(const std::vector<const Evidence*>& segments) {
    std::vector<int64_t> ids;
    for (const auto* e : segments) ids.push_back(e->segment_id);
    if (prefix_store != nullptr) return prefix_store->get(ids);
    // Each distinct segment looked up once (two questions of a batch may share one).
    std::map<int64_t, KVPrefix> found;
    std::vector<const Evidence*> missing;
    for (const auto* e : segments) {
      if (found.count(e->segment_id) > 0) continue;
      if (auto p = prefix_cache->get(e->segment_id)) {
        found[e->segment_id] = std::move(*p);
      } else {
        found[e->segment_id] = {};
        missing.push_back(e);
      }
    }
    if (!missing.empty()) {
      std::vector<KnowledgeTokens> tokens;
      for (const auto* e : missing) tokens.push_back(pipeline->segment_tokens({e->title, e->text}));
      const KVPrefix made = pipeline->encode_segments(tokens);
      for (size_t j = 0; j < missing.size(); ++j) {
        KVPrefix& row = found[missing[j]->segment_id];
        for (size_t l = 0; l < made.keys.size(); ++l) {
          const auto r = static_cast<int64_t>(j);
          row.keys.push_back(made.keys[l].narrow(0, r, 1).clone());
          row.values.push_back(made.values[l].narrow(0, r, 1).clone());
        }
        prefix_cache->put(missing[j]->segment_id, row);
      }
    }
    std::vector<const KVPrefix*> rows;
    for (const auto id : ids) rows.push_back(&found.at(id));
    KVPrefix out;
    for (size_t l = 0; l < rows.front()->keys.size(); ++l) {
      std::vector<torch::Tensor> k, v;
      for (const auto& r : rows) {
        k.push_back(r->keys[l]);
        v.push_back(r->values[l]);
      }
      out.keys.push_back(torch::cat(k, 0));
      out.values.push_back(torch::cat(v, 0));
    }
    return out;
  }

  // The mixture's log prior weights over each question's evidence: the retrieval posterior.
  std::vector<std::vector<float>> mixture_log_weights(
      const std::vector<std::string>& questions,
      const std::vector<std::vector<Evidence>>& evidence) {
    return retriever->log_posterior(questions, evidence, options.posterior);
  }

  // The index's prefix store where it is this encoder's for this LLM and index, else null with
  // the reason in prefix_store_status.
  void open_prefix_store() {
    const std::string dir = !options.index_dir.empty() ? options.index_dir
                            : retriever != nullptr     ? retriever->dir()
                                                       : std::string();
    if (!options.use_prefix_store) {
      prefix_store_status = "the prefix store is off (use_prefix_store: false)";
      return;
    }
    if (dir.empty() || !pipeline->has_encoder()) return;
    auto store = PrefixStore::open(dir);
    if (store == nullptr) {
      prefix_store_status = fmt::format(
          "no prefix store in {} (kvrag index build-prefixes): segments are encoded for each "
          "question",
          dir);
      return;
    }
    const auto& h = store->header();
    std::string why;
    if (h.encoder_fingerprint != pipeline->encoder_fingerprint())
      why = "built by another knowledge encoder";
    else if (h.llm_fingerprint != pipeline->llm_fingerprint())
      why = "built for another LLM";
    else if (retriever != nullptr && h.segments != retriever->store().size())
      why = fmt::format("built for {} segments, the index has {}", h.segments,
                        retriever->store().size());
    else if (h.entries != pipeline->prefix_entries(1) ||
             h.layers != pipeline->llm_config().num_hidden_layers)
      why = "its shape is not this encoder's";
    if (!why.empty()) {
      prefix_store_status = fmt::format(
          "the prefix store of {} was {}: segments are encoded for each question (rebuild it with "
          "kvrag index build-prefixes)",
          dir, why);
      return;
    }
    prefix_store_status =
        fmt::format("prefixes from the store of {} ({} segments, {})", dir, h.segments, h.dtype);
    prefix_store = std::move(store);
  }

  // LLM positions left for the prompt in `mode` with `segments` segments per question, after the
  // prefix's positions (none where its keys are placed) and `room` for the answer: what run()
  // checks, prompt_text() fits and max_top_k() solves for.
  int64_t prompt_budget(AnswerMode mode, int64_t segments, int64_t room) const {
    const int64_t prefix = uses_prefix(mode) ? pipeline->prefix_positions(segments) : 0;
    return pipeline->max_positions() - prefix - room;
  }

  // `where`: "question I: " in a batch of questions, "" for a single one.
  void check_question(const std::string& q, const std::string& where) const {
    KVRAG_CHECK_INPUT(!blank(q), "{}empty question", where);
    const auto n = pipeline->tokenizer().encode(q, false).size();
    KVRAG_CHECK_INPUT(static_cast<int64_t>(n) <= options.max_question_tokens,
                      "{}the question has {} tokens, over the limit of {} (max_question_tokens)",
                      where, n, options.max_question_tokens);
  }

  // An input Error unless the bare prompt of `question` fits `budget`, saying what would fit.
  void check_room(const std::string& question, int64_t budget, int64_t segments, int64_t room,
                  const std::string& where) const {
    const auto prompt = static_cast<int64_t>(pipeline->prompt_ids(question).size());
    if (prompt <= budget) return;
    const int64_t P = pipeline->prefix_positions(1);  // positions per segment (0: none or placed)
    const int64_t left = pipeline->max_positions() - room - prompt;  // for the prefix
    std::string hint = "ask a shorter question or fewer new tokens";
    if (segments > 0 && P > 0 && left >= P)
      hint = fmt::format("ask with top_k {} or less", left / P);
    throw Error(fmt::format("{}the prompt ({} tokens), the prefix ({} segments × {} positions) "
                            "and the answer ({} tokens) exceed the LLM's {} positions: {}",
                            where, prompt, segments, P, room, pipeline->max_positions(), hint),
                ErrorKind::kInput);
  }

  // The whole pipeline. generate_answers: produce answers (and groundedness if asked);
  // references: score these answers teacher-forced into *scores.
  std::vector<Answer> run(const std::vector<std::string>& questions, AnswerMode mode, int top_k,
                          bool generate_answers, bool groundedness,
                          const std::vector<std::string>* references,
                          std::vector<ForcedScore>* scores) {
    torch::NoGradGuard no_grad;
    const auto t_start = Clock::now();
    const size_t n = questions.size();
    if (references != nullptr) {
      KVRAG_CHECK(references->size() == n, "{} questions but {} answers to score", n,
                  references->size());
      for (size_t i = 0; i < n; ++i)
        KVRAG_CHECK(!blank((*references)[i]), "question {}: empty answer to score", i);
      scores->assign(n, {});
    }
    const auto where = [n](size_t i) {
      return n == 1 ? std::string() : fmt::format("question {}: ", i);
    };
    for (size_t i = 0; i < n; ++i) check_question(questions[i], where(i));
    if (mode != AnswerMode::kNone) {
      KVRAG_CHECK(retriever != nullptr, "mode {} needs an index (--index); none was given",
                  to_string(mode));
      KVRAG_CHECK_INPUT(top_k >= 1, "top-k must be at least 1, not {}", top_k);
    }
    if (uses_prefix(mode)) {
      KVRAG_CHECK(pipeline->has_encoder(),
                  "mode {} needs a knowledge encoder (--knowledge-encoder); none was given",
                  to_string(mode));
    }

    double retrieve_ms = 0, encode_ms = 0, generate_ms = 0, prefill_ms = 0, decode_ms = 0;
    std::vector<std::vector<Evidence>> evidence(n);
    if (mode != AnswerMode::kNone) {
      const auto t0 = Clock::now();
      evidence = retriever->search(questions, top_k);
      retrieve_ms = ms_since(t0);
    }

    // Questions with the same number of prefix segments share a batch (one prefix length).
    std::map<int64_t, std::vector<size_t>> groups;
    for (size_t i = 0; i < n; ++i) {
      groups[uses_prefix(mode) ? std::min<int64_t>(top_k, evidence[i].size()) : 0].push_back(i);
    }
    std::vector<Answer> answers(n);
    // Mixture (AnswererOptions::combine): a question's `used` segments become `used` rows, one
    // segment's prefix each, decoded together (PrefixDecoding::mixture).
    std::vector<std::vector<float>> log_weights;  // [question][rank] where mixing
    for (const auto& [used, group] : groups) {
      if (!uses_prefix(mode) || !mixes(used) || !log_weights.empty()) continue;
      const auto t0 = Clock::now();  // the dense scores are retrieval's work
      log_weights = mixture_log_weights(questions, evidence);
      retrieve_ms += ms_since(t0);
    }
    for (const auto& [used, group] : groups) {
      const int64_t m = uses_prefix(mode) && mixes(used) ? used : 1;  // rows per question
      const int64_t per_row = m > 1 ? 1 : used;                       // segments per row
      const auto row_of = [m](size_t b) { return static_cast<int64_t>(b) * m; };
      const auto t0 = Clock::now();
      std::vector<PrefixExample> examples(group.size() * m);
      std::vector<int64_t> rows(examples.size());
      for (size_t b = 0; b < group.size(); ++b) {
        const size_t i = group[b];
        PrefixExample ex;
        if (references != nullptr) ex.target = pipeline->target_ids((*references)[i]);
        // Room after the prompt: the answer to generate and/or the reference to score.
        int64_t room = generate_answers ? options.max_new_tokens + 1 : 0;
        room = std::max<int64_t>(room, ex.target.size());
        const int64_t budget = prompt_budget(mode, per_row, room);
        check_room(questions[i], budget, per_row, room, where(i));
        ex.prompt = pipeline->fit_prompt(
            questions[i],
            uses_context(mode) ? passages_of(evidence[i], top_k) : std::vector<PromptPassage>{},
            budget, i);
        const auto segments = passages_of(evidence[i], static_cast<size_t>(used));
        for (int64_t r = 0; r < m; ++r) {
          const int64_t row = row_of(b) + r;
          rows[row] = row;
          examples[row] = ex;
          if (prefix_store != nullptr || prefix_cache != nullptr) continue;  // not encoded here
          for (int64_t j = 0; j < per_row; ++j)
            examples[row].segments.push_back(pipeline->segment_tokens(segments[m > 1 ? r : j]));
        }
      }
      const PrefixBatch batch = pipeline->batch(examples, rows);
      KVPrefix prefix;
      if ((prefix_store != nullptr || prefix_cache != nullptr) && used > 0) {
        std::vector<KVPrefix> per_rank;  // rank j of every row, as the encoder would make it
        for (int64_t j = 0; j < per_row; ++j) {
          std::vector<const Evidence*> segments;
          for (size_t b = 0; b < group.size(); ++b) {
            for (int64_t r = 0; r < m; ++r) segments.push_back(&evidence[group[b]][m > 1 ? r : j]);
          }
          per_rank.push_back(segment_prefixes(segments));
        }
        prefix = pipeline->prefix_from(per_rank, batch);
      } else {
        prefix = pipeline->prefix(batch);
      }
      encode_ms += ms_since(t0);
      const char* source = !uses_prefix(mode)        ? ""
                           : prefix_store != nullptr ? "store"
                           : prefix_cache != nullptr ? "cache"
                                                     : "encoder";
      for (const size_t i : group) answers[i].prefix_source = source;
      std::vector<float> row_log_weights;  // [rows] where mixing
      for (size_t b = 0; m > 1 && b < group.size(); ++b) {
        for (int64_t r = 0; r < m; ++r) row_log_weights.push_back(log_weights[group[b]][r]);
      }
      // Per question, from its rows' teacher-forced scores: the row's own, or where mixing the
      // answer's likelihood under the mixture and each segment's posterior p(z | q, y).
      const auto question_scores = [&](const PrefixBatch& scored,
                                       std::vector<std::vector<double>>* citations,
                                       std::vector<std::vector<double>>* posterior) {
        const auto s = pipeline->scores(scored, prefix, citations, used);
        std::vector<ForcedScore> out(group.size());
        if (posterior != nullptr) posterior->assign(group.size(), {});
        for (size_t b = 0; b < group.size(); ++b) {
          if (m == 1) {
            out[b] = s[b];
            continue;
          }
          const std::vector<ForcedScore> r(s.begin() + row_of(b), s.begin() + row_of(b) + m);
          std::vector<double> post;
          out[b] = mix_scores(
              r, {row_log_weights.begin() + row_of(b), row_log_weights.begin() + row_of(b) + m},
              static_cast<double>(scored.target_lengths[row_of(b)]), &post);
          if (posterior != nullptr) (*posterior)[b] = std::move(post);
        }
        return out;
      };

      const auto t1 = Clock::now();
      if (references != nullptr) {
        const auto s = question_scores(batch, nullptr, nullptr);
        for (size_t b = 0; b < group.size(); ++b) (*scores)[group[b]] = s[b];
      }
      if (generate_answers) {
        GenerationStats stats;
        std::vector<std::vector<int64_t>> closed_book;  // the contrast (options.contrast)
        const bool contrast = options.contrast > 0.0f && mode != AnswerMode::kNone;
        for (size_t b = 0; contrast && b < group.size(); ++b)
          closed_book.push_back(pipeline->prompt_ids(questions[group[b]]));
        PrefixDecoding decoding;
        decoding.contrast = contrast ? options.contrast : 0.0f;
        decoding.closed_book = &closed_book;
        decoding.mixture = m;
        decoding.mixture_log_weights = row_log_weights;
        for (size_t b = 0; options.extractive && mode != AnswerMode::kNone && b < group.size();
             ++b) {
          const auto source = pipeline->extractive_source(
              passages_of(evidence[group[b]], uses_context(mode) ? top_k : used));
          for (int64_t r = 0; r < m; ++r) decoding.copy_from.push_back(source);
        }
        const auto texts =
            pipeline->generate(batch, prefix, options.max_new_tokens, &stats, decoding);
        prefill_ms += stats.prefill_ms;
        decode_ms += stats.decode_ms;
        for (size_t b = 0; b < group.size(); ++b) {
          Answer& a = answers[group[b]];
          a.text = texts[row_of(b)];
          a.prefill_tokens = m * static_cast<int64_t>(batch.prompts[row_of(b)].size());
          a.evidence = evidence[group[b]];
          a.groundedness.answer_in_evidence = answer_in(normalize_answer(a.text), a.evidence);
        }
        const bool cite = options.citations && uses_prefix(mode) && used > 0;
        if (groundedness || cite) {
          // The generated answer scored with the mode's input (same prompts, same prefix) and
          // cited by its attention on the prefix (where mixing: by each segment's posterior
          // given the answer), both from one teacher-forced forward; for groundedness also
          // scored closed-book.
          std::vector<PrefixExample> with(examples.size());
          for (size_t row = 0; row < examples.size(); ++row) {
            with[row].prompt = examples[row].prompt;
            with[row].target = pipeline->target_ids(texts[row]);
          }
          std::vector<std::vector<double>> cited;
          const auto s_with =
              question_scores(pipeline->batch(with, rows), cite && m == 1 ? &cited : nullptr,
                              cite && m > 1 ? &cited : nullptr);
          if (cite) {
            for (size_t b = 0; b < group.size(); ++b) answers[group[b]].citations = cited[b];
          }
          if (groundedness) {
            std::vector<PrefixExample> without(group.size());
            std::vector<int64_t> question_rows(group.size());
            for (size_t b = 0; b < group.size(); ++b) {
              without[b].prompt = pipeline->prompt_ids(questions[group[b]]);
              without[b].target = with[row_of(b)].target;
              question_rows[b] = static_cast<int64_t>(b);
            }
            const auto s_without =
                mode == AnswerMode::kNone
                    ? s_with
                    : pipeline->scores(pipeline->batch(without, question_rows), {});
            for (size_t b = 0; b < group.size(); ++b) {
              auto& g = answers[group[b]].groundedness;
              g.logprob_with = s_with[b].logprob;
              g.logprob_without = s_without[b].logprob;
              g.scored = true;
            }
          }
        }
      }
      generate_ms += ms_since(t1);
    }
    const double total_ms = ms_since(t_start);
    for (auto& a : answers) {
      a.answered_by = to_string(mode);
      a.retrieve_ms = retrieve_ms;
      a.encode_ms = encode_ms;
      a.generate_ms = generate_ms;
      a.prefill_ms = prefill_ms;
      a.decode_ms = decode_ms;
      a.ttft_ms = retrieve_ms + encode_ms + prefill_ms;
      a.total_ms = total_ms;
    }
    return answers;
  }

  // run() in any mode, auto included, then the flags and abstention (answerer.h).
  std::vector<Answer> answer(const std::vector<std::string>& questions, AnswerMode mode, int top_k,
                             bool groundedness, const std::vector<std::string>* references,
                             std::vector<ForcedScore>* scores) {
    const bool abstaining = options.abstain_below > -std::numeric_limits<double>::infinity();
    std::vector<Answer> answers;
    if (mode != AnswerMode::kAuto) {
      answers = run(questions, mode, top_k, true, groundedness || abstaining, references, scores);
    } else {
      answers = answer_auto(questions, top_k, references, scores);
    }
    for (auto& a : answers) {
      if (!a.groundedness.scored) continue;
      const double score = a.groundedness.score();
      const auto t = options.flag_below.find(parse_answer_mode(a.answered_by));
      if (t != options.flag_below.end()) a.flagged = score < t->second;
      if (score < options.abstain_below) {
        a.abstained = true;
        a.withheld = std::move(a.text);
        a.text = "unknown";
      }
    }
    return answers;
  }

  // auto: every question in prefix mode; those whose answer scores under the prefix threshold
  // again in context mode, their timings adding both passes.
  std::vector<Answer> answer_auto(const std::vector<std::string>& questions, int top_k,
                                  const std::vector<std::string>* references,
                                  std::vector<ForcedScore>* scores) {
    KVRAG_CHECK(pipeline->has_encoder(),
                "mode auto answers in prefix mode first and needs a knowledge encoder "
                "(--knowledge-encoder); none was given");
    const auto t = options.flag_below.find(AnswerMode::kPrefix);
    KVRAG_CHECK(t != options.flag_below.end(),
                "mode auto needs a threshold on the prefix answers' groundedness score: calibrate "
                "one with kvrag eval --calibrate-on DEV.jsonl (recorded in the workspace's {}), "
                "or give --auto-threshold",
                "answer_defaults.json");
    auto answers = run(questions, AnswerMode::kPrefix, top_k, true, true, references, scores);
    std::vector<size_t> again;
    for (size_t i = 0; i < answers.size(); ++i) {
      if (answers[i].groundedness.score() < t->second) again.push_back(i);
    }
    if (again.empty()) return answers;
    std::vector<std::string> qs, refs;
    for (const size_t i : again) {
      qs.push_back(questions[i]);
      if (references != nullptr) refs.push_back((*references)[i]);
    }
    std::vector<ForcedScore> again_scores;
    auto redone = run(qs, AnswerMode::kContext, top_k, true, true,
                      references != nullptr ? &refs : nullptr, &again_scores);
    for (size_t j = 0; j < again.size(); ++j) {
      const Answer& first = answers[again[j]];
      Answer& a = redone[j];
      a.ttft_ms += first.total_ms;  // the prefix answer, scored, came first
      a.retrieve_ms += first.retrieve_ms;
      a.encode_ms += first.encode_ms;
      a.prefill_ms += first.prefill_ms;
      a.decode_ms += first.decode_ms;
      a.generate_ms += first.generate_ms;
      a.total_ms += first.total_ms;
      a.prefill_tokens += first.prefill_tokens;
      answers[again[j]] = std::move(a);
      if (references != nullptr) (*scores)[again[j]] = again_scores[j];
    }
    return answers;
  }
};

std::unique_ptr<Answerer> Answerer::open(const AnswererOptions& options,
                                         std::shared_ptr<IndexRetriever> retriever) {
  const torch::Dtype llm_dtype = parse_model_dtype(options.dtype);
  KVRAG_CHECK(options.max_new_tokens >= 1, "max_new_tokens must be at least 1, not {}",
              options.max_new_tokens);
  KVRAG_CHECK(options.max_question_tokens >= 1, "max_question_tokens must be at least 1, not {}",
              options.max_question_tokens);
  KVRAG_CHECK(std::isfinite(options.posterior.dense) && std::isfinite(options.posterior.bm25),
              "the retrieval posterior's weights must be finite, not dense {} and bm25 {}",
              options.posterior.dense, options.posterior.bm25);
  KVRAG_CHECK(options.combine != PrefixCombine::kMixture || options.contrast <= 0.0f,
              "the mixture combination and contrast decoding do not combine");
  std::unique_ptr<Answerer> self(new Answerer());
  self->impl_ = std::make_unique<Impl>();
  Impl& im = *self->impl_;
  im.options = options;
  im.pipeline = std::make_unique<PrefixPipeline>(options.llm_dir, llm_dtype);
  im.retriever = std::move(retriever);
  if (im.retriever == nullptr && !options.index_dir.empty())
    im.retriever = open_retriever(options.index_dir, options.retriever);
  if (!options.knowledge_encoder_dir.empty())
    im.pipeline->load_encoder(options.knowledge_encoder_dir);
  im.trained_k = read_trained_top_k(options.knowledge_encoder_dir);
  im.open_prefix_store();
  KVRAG_CHECK(options.prefix_cache_mb >= 0 && options.prefix_cache_mb <= (int64_t{1} << 30),
              "prefix_cache_mb must be within [0, 2^30], not {}", options.prefix_cache_mb);
  if (im.prefix_store == nullptr && options.prefix_cache_mb > 0 && im.pipeline->has_encoder())
    im.prefix_cache = std::make_unique<PrefixCache>(options.prefix_cache_mb << 20);
  return self;
}

Answerer::~Answerer() = default;

std::vector<Answer> Answerer::answer(const std::vector<std::string>& questions, AnswerMode mode,
                                     int top_k, bool groundedness) const {
  return impl_->answer(questions, mode, top_k, groundedness, nullptr, nullptr);
}

std::vector<Answerer::ForcedScore> Answerer::score_answers(
    const std::vector<std::string>& questions, const std::vector<std::string>& answers,
    AnswerMode mode, int top_k) const {
  std::vector<ForcedScore> scores;
  KVRAG_CHECK(mode != AnswerMode::kAuto,
              "mode auto picks its mode by the answer it generates: score answers in prefix or "
              "context mode");
  impl_->run(questions, mode, top_k, false, false, &answers, &scores);
  return scores;
}

std::vector<Answer> Answerer::answer_and_score(const std::vector<std::string>& questions,
                                               const std::vector<std::string>& references,
                                               AnswerMode mode, int top_k, bool groundedness,
                                               std::vector<ForcedScore>* scores) const {
  KVRAG_CHECK(scores != nullptr, "answer_and_score: no output for the scores");
  return impl_->answer(questions, mode, top_k, groundedness, &references, scores);
}

std::vector<std::vector<Evidence>> Answerer::retrieve(const std::vector<std::string>& questions,
                                                      int top_k) const {
  KVRAG_CHECK(impl_->retriever != nullptr, "retrieval needs an index: none was given (--index)");
  return impl_->retriever->search(questions, top_k);
}

RetrievalReport Answerer::evaluate_retrieval(const std::vector<Question>& questions,
                                             const std::vector<int>& ks) const {
  KVRAG_CHECK(impl_->retriever != nullptr,
              "retrieval evaluation needs an index: none was given (--index)");
  return impl_->retriever->evaluate(questions, ks);
}

std::string Answerer::prompt_text(const std::string& question, AnswerMode mode,
                                  const std::vector<Evidence>& evidence) const {
  std::string text;
  impl_->pipeline->fit_prompt(
      question,
      uses_context(mode) ? passages_of(evidence, evidence.size()) : std::vector<PromptPassage>{},
      impl_->prompt_budget(mode, static_cast<int64_t>(evidence.size()),
                           impl_->options.max_new_tokens + 1),
      0, &text);
  return text;
}

int64_t Answerer::prompt_tokens(const std::string& question) const {
  return static_cast<int64_t>(impl_->pipeline->prompt_ids(question).size());
}

int Answerer::max_top_k(AnswerMode mode, int cap, int64_t prompt_tokens) const {
  // As run() checks it: prompt + prefix + the answer's room within the positions.
  const int64_t room = impl_->options.max_new_tokens + 1;
  const int64_t left = impl_->prompt_budget(mode, 0, room) - prompt_tokens;
  if (left < 0 || cap < 1) return 0;
  const int64_t per_segment = uses_prefix(mode) ? impl_->pipeline->prefix_positions(1) : 0;
  if (per_segment == 0) return cap;
  return static_cast<int>(std::min<int64_t>(cap, left / per_segment));
}

const AnswererOptions& Answerer::options() const { return impl_->options; }
PrefixPipeline& Answerer::pipeline() const { return *impl_->pipeline; }

void Answerer::set_flag_below(const std::map<AnswerMode, double>& thresholds) {
  impl_->options.flag_below = thresholds;
}
void Answerer::set_posterior(const RetrievalPosterior& posterior) {
  impl_->options.posterior = posterior;
}
bool Answerer::has_index() const { return impl_->retriever != nullptr; }
bool Answerer::has_knowledge_encoder() const { return impl_->pipeline->has_encoder(); }

std::optional<int> Answerer::trained_top_k() const { return impl_->trained_k; }
IndexRetriever* Answerer::retriever() const { return impl_->retriever.get(); }
bool Answerer::uses_prefix_store() const { return impl_->prefix_store != nullptr; }
std::optional<PrefixCacheStats> Answerer::prefix_cache_stats() const {
  if (impl_->prefix_cache == nullptr) return std::nullopt;
  return impl_->prefix_cache->stats();
}
const std::string& Answerer::prefix_store_status() const { return impl_->prefix_store_status; }

}  // namespace kvrag
