#include "prefix/prefix_batch.h"

#include <algorithm>

#include "core/error.h"

namespace kvrag {

PrefixBatch make_prefix_batch(const std::vector<PrefixExample>& examples,
                              const std::vector<int64_t>& rows, int64_t encoder_pad) {
  KVRAG_CHECK(!rows.empty(), "empty batch");
  for (const auto i : rows) {
    KVRAG_CHECK(i >= 0 && i < static_cast<int64_t>(examples.size()),
                "batch row {} is not one of the {} examples", i, examples.size());
  }
  const int64_t B = static_cast<int64_t>(rows.size());
  const auto& first = examples[rows[0]];
  const size_t k = first.segments.size();
  const bool with_targets = !first.target.empty();
  PrefixBatch batch;

  // Segments, rank by rank: [B, T_r], right-padded.
  for (size_t r = 0; r < k; ++r) {
    const bool llm_cut = !first.segments[r].llm_ids.empty();
    int64_t T = 1;
    for (const auto i : rows) {
      const auto& ex = examples[i];
      KVRAG_CHECK(ex.segments.size() == k,
                  "batch rows have different numbers of segments ({} and {})", k,
                  ex.segments.size());
      const auto& s = ex.segments[r];
      KVRAG_CHECK(llm_cut == !s.llm_ids.empty() && (!llm_cut || s.llm_ids.size() == s.ids.size()),
                  "batch rows have segments cut by different tokenizers");
      T = std::max<int64_t>(T, static_cast<int64_t>(s.ids.size()));
    }
    // [B, T]
    auto ids = torch::full({B, T}, encoder_pad, torch::kInt64);
    // [B, T]
    auto mask = torch::zeros({B, T}, torch::kInt64);
    // [B, T]
    auto llm_ids = llm_cut ? torch::full({B, T}, int64_t(-1), torch::kInt64) : torch::Tensor();
    auto* pi = ids.data_ptr<int64_t>();
    auto* pm = mask.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      const auto& s = examples[rows[b]].segments[r];
      std::copy(s.ids.begin(), s.ids.end(), pi + b * T);
      std::fill(pm + b * T, pm + b * T + static_cast<int64_t>(s.ids.size()), 1);
      if (llm_cut)
        std::copy(s.llm_ids.begin(), s.llm_ids.end(), llm_ids.data_ptr<int64_t>() + b * T);
    }
    batch.segment_ids.push_back(ids);
    batch.segment_mask.push_back(mask);
    batch.segment_llm_ids.push_back(llm_ids);
  }

  for (const auto i : rows) {
    const auto& ex = examples[i];
    KVRAG_CHECK(!ex.prompt.empty(), "batch row {}: empty prompt", i);
    KVRAG_CHECK(ex.target.empty() != with_targets, "batch rows with and without answers to score");
    batch.prompts.push_back(ex.prompt);
    batch.prompt_lengths.push_back(static_cast<int64_t>(ex.prompt.size()));
    batch.target_lengths.push_back(static_cast<int64_t>(ex.target.size()));
  }
  if (!with_targets) return batch;

  // The LLM's input: prompt + target[:-1], right-padded; labels at the answer positions.
  int64_t S = 1;
  for (const auto i : rows) {
    S = std::max<int64_t>(
        S, static_cast<int64_t>(examples[i].prompt.size() + examples[i].target.size()) - 1);
  }
  batch.ids = torch::zeros({B, S}, torch::kInt64);                   // [B, S]
  batch.mask = torch::zeros({B, S}, torch::kInt64);                  // [B, S]
  batch.labels = torch::full({B, S}, int64_t(-100), torch::kInt64);  // [B, S]
  auto* pi = batch.ids.data_ptr<int64_t>();
  auto* pm = batch.mask.data_ptr<int64_t>();
  auto* pl = batch.labels.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& ex = examples[rows[b]];
    std::vector<int64_t> seq = ex.prompt;
    seq.insert(seq.end(), ex.target.begin(), ex.target.end());
    // inputs: all but the last token
    const int64_t n = static_cast<int64_t>(seq.size()) - 1;
    const int64_t first_answer = static_cast<int64_t>(ex.prompt.size()) - 1;  // predicts target[0]
    for (int64_t t = 0; t < n; ++t) {
      pi[b * S + t] = seq[t];
      pm[b * S + t] = 1;
      if (t >= first_answer) {
        pl[b * S + t] = seq[t + 1];
        ++batch.answer_tokens;
      }
    }
  }
  return batch;
}

KVPrefix batch_prefix(KnowledgeEncoderImpl& encoder, const LlamaForCausalLMImpl& llm,
                      const PrefixBatch& batch) {
  if (batch.segments() == 0) return {};
  std::vector<KVPrefix> per_rank;
  for (int64_t r = 0; r < batch.segments(); ++r) {
    per_rank.push_back(
        encoder.forward(batch.segment_ids[r], batch.segment_mask[r], batch.segment_llm_ids[r]));
  }
  return finish_prefix(encoder.config(), llm, per_rank, batch.prompt_lengths);
}

KVPrefix finish_prefix(const KnowledgeEncoderConfig& config, const LlamaForCausalLMImpl& llm,
                       const std::vector<KVPrefix>& per_rank,
                       const std::vector<int64_t>& prompt_lengths) {
  if (per_rank.empty()) return {};
  KVPrefix prefix = concat_prefixes(per_rank);
  for (auto* v : {&prefix.keys, &prefix.values}) {
    for (auto& t : *v) t = t.to(llm.dtype());
  }
  return place_for_answer(config, llm, prefix, prompt_lengths);
}

AnswerLogits answer_logits(LlamaForCausalLMImpl& llm, const PrefixBatch& batch,
                           const KVPrefix* prefix, std::vector<torch::Tensor>* attention_probs) {
  KVRAG_CHECK(batch.has_targets(), "scoring answers: the batch has no answers");
  LlamaForwardArgs args;
  args.prefix = prefix != nullptr && !prefix->empty() ? prefix : nullptr;
  args.attention_mask = batch.mask;
  args.attention_probs = attention_probs;
  const auto hidden = llm.hidden_states(batch.ids, args);                           // [B, S, H]
  const auto flat_labels = batch.labels.view({-1});                                 // [B·S]
  const auto positions = flat_labels.ne(-100).nonzero().view({-1});                 // [N]
  const auto h = hidden.reshape({-1, hidden.size(-1)}).index_select(0, positions);  // [N, H]
  // [N, V] fp32, [N]
  return {llm.logits(h), flat_labels.index_select(0, positions)};
}

torch::Tensor answer_loss(LlamaForCausalLMImpl& llm, const PrefixBatch& batch,
                          const KVPrefix* prefix) {
  const auto a = answer_logits(llm, batch, prefix);
  return torch::nn::functional::cross_entropy(a.logits, a.labels);
}

std::vector<ForcedScore> answer_scores(LlamaForCausalLMImpl& llm, const PrefixBatch& batch,
                                       const KVPrefix* prefix,
                                       std::vector<torch::Tensor>* attention_probs) {
  const auto a = answer_logits(llm, batch, prefix, attention_probs);
  // [N, V]
  const auto logp = torch::log_softmax(a.logits, -1);
  // [N]
  const auto token_logp = logp.gather(1, a.labels.unsqueeze(1)).squeeze(1).to(torch::kFloat64);
  // [N]
  const auto correct = (logp.argmax(1) == a.labels).to(torch::kFloat64);
  const double* lp = token_logp.data_ptr<double>();
  const double* ok = correct.data_ptr<double>();
  std::vector<ForcedScore> out(batch.size());
  int64_t k = 0;  // answer positions are row-major: row b's follow row b-1's
  for (int64_t b = 0; b < batch.size(); ++b) {
    const int64_t n = batch.target_lengths[b];
    double sum_lp = 0, sum_ok = 0;
    for (int64_t j = 0; j < n; ++j, ++k) {
      sum_lp += lp[k];
      sum_ok += ok[k];
    }
    out[b].logprob = sum_lp / static_cast<double>(n);
    out[b].token_accuracy = sum_ok / static_cast<double>(n);
  }
  return out;
}

void check_citable(const KVPrefix& prefix, int64_t segments) {
  const int64_t P = prefix.length();
  KVRAG_CHECK(segments >= 1 && P > 0 && P % segments == 0,
              "citations: a prefix of {} entries is not {} segments' prefixes", P, segments);
}

torch::Tensor prefix_attention(const std::vector<torch::Tensor>& probs, const PrefixBatch& batch,
                               const KVPrefix& prefix, int64_t segments) {
  KVRAG_CHECK(batch.has_targets(), "citations: the batch has no answers");
  check_citable(prefix, segments);
  KVRAG_CHECK(!probs.empty(), "citations: no attention probabilities were kept");
  torch::NoGradGuard no_grad;
  const int64_t B = batch.size(), P = prefix.length();
  const int64_t T = batch.ids.size(1);
  // [B or 1, 1, 1, P]: entries that carry something (a shorter segment's padding entries have
  // zero keys and values: they take some attention, but give the answer nothing)
  const auto real =
      prefix.values[0].abs().sum({1, 3}).gt(0).to(torch::kFloat32).unsqueeze(1).unsqueeze(1);
  auto mass = torch::zeros({B, T, segments}, torch::kFloat64);  // [B, T, k]
  for (const auto& p : probs) {
    // [B, H, T, k, P/k] → [B, T, k]: each segment's entries summed, heads averaged
    mass += (p.narrow(3, 0, P) * real)
                .reshape({B, p.size(1), T, segments, P / segments})
                .sum(-1)
                .mean(1)
                .to(torch::kFloat64);
  }
  mass /= static_cast<double>(probs.size());
  const auto answer = batch.labels.ne(-100).to(torch::kFloat64).unsqueeze(-1);  // [B, T, 1]
  // [B, k]: averaged over each row's answer positions
  return (mass * answer).sum(1) / answer.sum(1).clamp_min(1.0);
}

}  // namespace kvrag
