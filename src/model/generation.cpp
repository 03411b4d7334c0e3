#include "model/generation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <optional>

#include "core/error.h"

namespace kvrag {

namespace {
// Contrast's adaptive plausibility constraint (Li et al., 2023, contrastive decoding): only
// tokens whose probability with the evidence is at least this share of the most likely one's
// may be picked, so that subtracting the prior never promotes a token the evidence itself finds
// implausible.
constexpr double kPlausibility = 0.1;

// Extractive decoding's state for one row (GenerationOptions::copy_from): the source positions
// where what the row has written so far could go on.
class SpanCopier {
 public:
  explicit SpanCopier(const std::vector<int64_t>* source) : source_(source) {
    for (size_t j = 0; j < source->size(); ++j) {
      if ((*source)[j] >= 0) active_.push_back(j);
    }
  }
  // `logits` [V] with every token but the span's continuations (and, once a token is written,
  // the stop tokens) at -inf, into *out; false where nothing is left to pick.
  bool mask(const float* logits, int64_t V, const std::vector<int64_t>& stop_ids,
            std::vector<float>* out) const {
    out->assign(V, -std::numeric_limits<float>::infinity());
    bool any = false;
    const auto allow = [&](int64_t t) {
      if (t < 0 || t >= V) return;
      (*out)[t] = logits[t];
      any = true;
    };
    for (const size_t j : active_) allow((*source_)[j]);
    for (const int64_t t : written_ ? stop_ids : std::vector<int64_t>{}) allow(t);
    return any;
  }
  void advance(int64_t token) {
    std::vector<size_t> next;
    for (const size_t j : active_) {
      if ((*source_)[j] == token && j + 1 < source_->size() && (*source_)[j + 1] >= 0)
        next.push_back(j + 1);
    }
    active_ = std::move(next);
    written_ = true;
  }

 private:
  const std::vector<int64_t>* source_;
  std::vector<size_t> active_;  // positions whose token may come next
  bool written_ = false;
};
}  // namespace

TokenSampler::TokenSampler(float temperature, float top_p, uint64_t seed)
    : temperature_(temperature), top_p_(top_p), rng_(seed) {
  KVRAG_CHECK(temperature >= 0.0f && std::isfinite(temperature), "temperature must be >= 0, got {}",
              temperature);
  KVRAG_CHECK(top_p > 0.0f && top_p <= 1.0f, "top_p must be in (0, 1], got {}", top_p);
}

double TokenSampler::next_uniform() { return rng_.uniform(); }

int64_t TokenSampler::sample(const float* logits, int64_t n) {
  if (temperature_ == 0.0f) return std::max_element(logits, logits + n) - logits;  // first max

  // Softmax at the given temperature, in descending order of probability.
  const float max_logit = *std::max_element(logits, logits + n);
  scratch_.resize(n);
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float p = std::exp((logits[i] - max_logit) / temperature_);
    scratch_[i] = {p, i};
    total += p;
  }
  std::sort(scratch_.begin(), scratch_.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  // Nucleus: the smallest head of the distribution whose mass reaches top_p.
  int64_t keep = n;
  double mass = 0.0;
  if (top_p_ < 1.0f) {
    for (int64_t i = 0; i < n; ++i) {
      mass += scratch_[i].first / total;
      if (mass >= top_p_) {
        keep = i + 1;
        break;
      }
    }
  }
  double kept = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept += scratch_[i].first;
  const double r = next_uniform() * kept;
  double acc = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += scratch_[i].first;
    if (r < acc) return scratch_[i].second;
  }
  return scratch_[keep - 1].second;
}

std::vector<Generation> generate(LlamaForCausalLMImpl& model,
                                 const std::vector<std::vector<int64_t>>& prompts,
                                 const GenerationOptions& options, const KVPrefix* prefix,
                                 GenerationStats* stats) {
  using Clock = std::chrono::steady_clock;
  const auto ms_between = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  const auto t_start = Clock::now();
  // No autograd bookkeeping at all (not even version counters): the model takes its inference
  // path, and nothing created here outlives the call.
  c10::InferenceMode inference;
  const auto& config = model.config();
  const int64_t B = static_cast<int64_t>(prompts.size());
  KVRAG_CHECK(B > 0, "generate: no prompts");
  KVRAG_CHECK(options.max_new_tokens >= 0, "generate: max_new_tokens must be >= 0");
  int64_t T0 = 0;
  for (const auto& p : prompts) {
    KVRAG_CHECK(!p.empty(), "generate: empty prompt (it needs at least BOS)");
    T0 = std::max<int64_t>(T0, static_cast<int64_t>(p.size()));
  }
  // A placed prefix's entries take room in the cache but no positions.
  const int64_t P = prefix != nullptr ? prefix->length() : 0;
  const int64_t P_positions = prefix != nullptr ? prefix->positions() : 0;
  const int64_t longest = P + T0 + options.max_new_tokens;
  KVRAG_CHECK(P_positions + T0 + options.max_new_tokens <= config.max_position_embeddings,
              "generate: prefix {} + prompt {} + {} new tokens exceeds the model's context of {}",
              P_positions, T0, options.max_new_tokens, config.max_position_embeddings);

  std::vector<int64_t> stop_ids = options.stop_ids;
  if (options.stop_at_eos)
    stop_ids.insert(stop_ids.end(), config.eos_token_ids.begin(), config.eos_token_ids.end());

  const bool contrast = options.contrast > 0.0f;
  KVRAG_CHECK(std::isfinite(options.contrast) && options.contrast >= 0.0f,
              "generate: contrast must be >= 0, got {}", options.contrast);
  int64_t T_plain = 0;  // the contrast prompts' longest
  if (contrast) {
    KVRAG_CHECK(static_cast<int64_t>(options.contrast_prompts.size()) == B,
                "generate: contrast needs one plain prompt per prompt ({}), got {}", B,
                options.contrast_prompts.size());
    for (const auto& p : options.contrast_prompts) {
      KVRAG_CHECK(!p.empty(), "generate: empty contrast prompt (it needs at least BOS)");
      T_plain = std::max<int64_t>(T_plain, static_cast<int64_t>(p.size()));
    }
    KVRAG_CHECK(T_plain + options.max_new_tokens <= config.max_position_embeddings,
                "generate: contrast prompt {} + {} new tokens exceeds the model's context of {}",
                T_plain, options.max_new_tokens, config.max_position_embeddings);
  }

  const int64_t m = options.mixture;
  KVRAG_CHECK(m >= 1 && B % m == 0, "generate: {} prompts do not split into mixture groups of {}",
              B, m);
  torch::Tensor log_weights;  // [B, 1]
  if (m > 1) {
    KVRAG_CHECK(!contrast, "generate: mixture and contrast decoding do not combine");
    KVRAG_CHECK(static_cast<int64_t>(options.mixture_log_weights.size()) == B,
                "generate: mixture needs one log-weight per prompt ({}), got {}", B,
                options.mixture_log_weights.size());
    log_weights = torch::tensor(options.mixture_log_weights, torch::kFloat32).unsqueeze(1);
  }
  // log Σ_r w_r p_r over each group, repeated for its rows: [B, V]
  const auto mixed = [&](const torch::Tensor& logits) {
    const int64_t V = logits.size(1);
    const auto log_probs = torch::log_softmax(logits, -1) + log_weights;  // [B, V]
    return torch::logsumexp(log_probs.view({B / m, m, V}), 1)             // [B / m, V]
        .repeat_interleave(m, 0)
        .contiguous();
  };

  // Left-pad the prompts so every row's next token lands in the same column.
  const auto left_pad = [B](const std::vector<std::vector<int64_t>>& rows, int64_t T) {
    auto ids = torch::zeros({B, T}, torch::kInt64);   // [B, T]
    auto mask = torch::zeros({B, T}, torch::kInt64);  // [B, T]
    for (int64_t b = 0; b < B; ++b) {
      const int64_t n = static_cast<int64_t>(rows[b].size());
      ids[b].narrow(0, T - n, n).copy_(torch::tensor(rows[b], torch::kInt64));
      mask[b].narrow(0, T - n, n).fill_(1);
    }
    return std::pair{ids, mask};
  };
  const auto [ids, mask] = left_pad(prompts, T0);

  std::vector<Generation> out(B);
  if (options.max_new_tokens == 0) return out;
  KVCache cache = model.new_cache(B, longest);
  LlamaForwardArgs args{prefix, &cache, mask};
  // The contrast's own cache and arguments: the plain prompts, no prefix.
  KVCache plain_cache;
  LlamaForwardArgs plain_args{nullptr, nullptr, torch::Tensor()};
  torch::Tensor plain_ids;
  if (contrast) {
    plain_cache = model.new_cache(B, T_plain + options.max_new_tokens);
    auto padded = left_pad(options.contrast_prompts, T_plain);
    plain_ids = padded.first;
    plain_args = {nullptr, &plain_cache, padded.second};
  }
  const float alpha = options.contrast;
  // (1 + α)·logits − α·plain over the plausible tokens: [B, V]
  const auto contrasted = [alpha](const torch::Tensor& logits, const torch::Tensor& plain) {
    const auto log_probs = torch::log_softmax(logits, -1);  // [B, V]
    const auto plausible =
        log_probs >= std::get<0>(log_probs.max(-1, true)) + std::log(kPlausibility);
    return (logits * (1.0f + alpha) - plain * alpha)
        .masked_fill(plausible.logical_not(), -std::numeric_limits<float>::infinity())
        .contiguous();
  };
  std::vector<TokenSampler> samplers;
  for (int64_t b = 0; b < B; ++b) {
    samplers.emplace_back(options.temperature, options.top_p,
                          options.seed + static_cast<uint64_t>(b));
  }
  std::vector<bool> done(B, false);
  int64_t remaining = B;
  KVRAG_CHECK(options.copy_from.empty() || static_cast<int64_t>(options.copy_from.size()) == B,
              "generate: copy_from needs one source per prompt ({}), got {}", B,
              options.copy_from.size());
  std::vector<std::optional<SpanCopier>> copiers(B);  // extractive rows
  for (int64_t b = 0; b < B && !options.copy_from.empty(); ++b) {
    if (!options.copy_from[b].empty()) copiers[b].emplace(&options.copy_from[b]);
  }
  std::vector<float> masked;  // a constrained row's logits

  // Only the last column's logits are needed: the LM head runs on one position, not T0.
  // [B, V]
  auto logits = model.logits(model.hidden_states(ids, args).select(1, T0 - 1)).contiguous();
  if (contrast) {
    logits = contrasted(
        logits, model.logits(model.hidden_states(plain_ids, plain_args).select(1, T_plain - 1)));
  }
  if (m > 1) logits = mixed(logits);
  const auto t_first = Clock::now();
  if (stats != nullptr) stats->prefill_ms = ms_between(t_start, t_first);
  std::vector<int64_t> next(B, 0);    // this step's token per row (0 for finished rows)
  std::vector<int64_t> picked(B, 0);  // this step's pick per row, stop tokens included
  for (int step = 0; step < options.max_new_tokens && remaining > 0; ++step) {
    for (int64_t b = 0; b < B; ++b) {
      if (done[b]) continue;
      // a mixture group's rows all take its first row's pick, and end with it
      if (b % m != 0 && done[b - b % m]) {
        done[b] = true;
        --remaining;
        continue;
      }
      int64_t token = picked[b - b % m];
      if (b % m == 0) {
        const float* row = logits[b].data_ptr<float>();
        if (copiers[b] && !copiers[b]->mask(row, logits.size(1), stop_ids, &masked)) {
          done[b] = true;  // the span cannot go on and there is no stop token to end it
          --remaining;
          continue;
        }
        token = samplers[b].sample(copiers[b] ? masked.data() : row, logits.size(1));
      }
      picked[b] = token;
      if (copiers[b]) copiers[b]->advance(token);
      if (std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end()) {
        out[b].stop_reason = StopReason::kStopToken;
        out[b].stop_token = token;
        done[b] = true;
        --remaining;
        continue;
      }
      out[b].tokens.push_back(token);
      next[b] = token;
    }
    if (remaining == 0 || step + 1 == options.max_new_tokens) break;
    // Finished rows keep decoding a dummy token (cheaper than reshaping the batch). Every new
    // token is real: no attention mask.
    args.prefix = nullptr;
    args.attention_mask = torch::Tensor();
    const auto next_ids = torch::from_blob(next.data(), {B, 1}, torch::kInt64);  // [B, 1], no copy
    logits = model.forward(next_ids, args).select(1, 0).contiguous();            // [B, V]
    if (contrast) {
      plain_args.attention_mask = torch::Tensor();
      logits = contrasted(logits, model.forward(next_ids, plain_args).select(1, 0));
    }
    if (m > 1) logits = mixed(logits);
    std::fill(next.begin(), next.end(), 0);
  }
  if (stats != nullptr) stats->decode_ms = ms_between(t_first, Clock::now());
  return out;
}

}  // namespace kvrag
