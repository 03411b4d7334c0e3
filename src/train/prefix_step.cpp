#include "train/prefix_step.h"

#include <algorithm>

#include "core/error.h"
#include "prefix/prompt.h"
#include "text/knowledge_tokenizer.h"
#include "text/tokenizer.h"

namespace kvrag {

PrefixExample make_prefix_example(const Tokenizer& llm_tokenizer, const KnowledgeTokenizer& segment_tokenizer,
                                  const std::string& question, const std::string& answer,
                                  const std::vector<std::pair<std::string, std::string>>& segments,
                                  int64_t max_segment_tokens, int64_t prefix_entries, int64_t max_positions,
                                  const std::string& where) {
  KVRAG_CHECK(max_segment_tokens >= 2, "max segment tokens must be at least 2 ([CLS] and [SEP]), got {}",
              max_segment_tokens);
  const std::string target_text = answer_target(answer);
  KVRAG_CHECK(target_text.find_first_not_of(" \t\r\n") != std::string::npos, "{}: empty answer (question \"{}\")", where, question);
  PrefixExample ex;
  for (const auto id : llm_tokenizer.encode(question_prompt(question), true)) ex.prompt.push_back(id);
  for (const auto id : answer_token_ids(llm_tokenizer, answer)) ex.target.push_back(id);
  KVRAG_CHECK(!ex.target.empty(), "{}: the answer \"{}\" has no tokens", where, answer);
  KVRAG_CHECK(llm_tokenizer.eos_id() >= 0, "the LLM's tokenizer has no EOS token");
  ex.target.push_back(llm_tokenizer.eos_id());
  // The LLM sees prompt + target[:-1] after the prefix entries.
  const int64_t length = prefix_entries + static_cast<int64_t>(ex.prompt.size() + ex.target.size()) - 1;
  KVRAG_CHECK(length <= max_positions,
              "{}: question and answer take {} tokens after a prefix of {}: {} in all, beyond the LLM's {} "
              "positions (shorten the question/answer or the prefix)",
              where, ex.prompt.size() + ex.target.size() - 1, prefix_entries, length, max_positions);
  for (const auto& [title, text] : segments) {
    auto t = segment_tokenizer.encode(title, text, max_segment_tokens);
    ex.truncated += t.truncated;
    ex.segments.push_back(std::move(t.ids));
    if (segment_tokenizer.reads_llm_pieces()) ex.segment_llm_ids.push_back(std::move(t.llm_ids));
  }
  return ex;
}

PrefixBatch make_prefix_batch(const std::vector<PrefixExample>& examples, const std::vector<int64_t>& rows,
                              int64_t encoder_pad) {
  KVRAG_CHECK(!rows.empty(), "empty batch");
  const int64_t B = static_cast<int64_t>(rows.size());
  const size_t k = examples[rows[0]].segments.size();
  PrefixBatch batch;
  for (size_t r = 0; r < k; ++r) {
    int64_t T = 1;
    for (const auto i : rows) {
      KVRAG_CHECK(examples[i].segments.size() == k, "batch rows have different numbers of segments");
      T = std::max<int64_t>(T, static_cast<int64_t>(examples[i].segments[r].size()));
    }
    const bool with_llm_ids = !examples[rows[0]].segment_llm_ids.empty();
    auto ids = torch::full({B, T}, encoder_pad, torch::kInt64);  // [B, T]
    auto mask = torch::zeros({B, T}, torch::kInt64);             // [B, T]
    auto llm_ids = with_llm_ids ? torch::full({B, T}, int64_t(-1), torch::kInt64) : torch::Tensor();  // [B, T]
    auto* pi = ids.data_ptr<int64_t>();
    auto* pm = mask.data_ptr<int64_t>();
    for (int64_t b = 0; b < B; ++b) {
      const auto& ex = examples[rows[b]];
      const auto& s = ex.segments[r];
      std::copy(s.begin(), s.end(), pi + b * T);
      std::fill(pm + b * T, pm + b * T + static_cast<int64_t>(s.size()), 1);
      if (with_llm_ids) {
        KVRAG_CHECK(ex.segment_llm_ids.size() == k && ex.segment_llm_ids[r].size() == s.size(),
                    "batch rows have segments cut by different tokenizers");
        std::copy(ex.segment_llm_ids[r].begin(), ex.segment_llm_ids[r].end(), llm_ids.data_ptr<int64_t>() + b * T);
      }
    }
    batch.segment_ids.push_back(ids);
    batch.segment_mask.push_back(mask);
    batch.segment_llm_ids.push_back(llm_ids);
  }
  int64_t S = 1;
  for (const auto i : rows) {
    S = std::max<int64_t>(S, static_cast<int64_t>(examples[i].prompt.size() + examples[i].target.size()) - 1);
  }
  batch.ids = torch::zeros({B, S}, torch::kInt64);             // [B, S]
  batch.mask = torch::zeros({B, S}, torch::kInt64);            // [B, S]
  batch.labels = torch::full({B, S}, int64_t(-100), torch::kInt64);  // [B, S]
  auto* pi = batch.ids.data_ptr<int64_t>();
  auto* pm = batch.mask.data_ptr<int64_t>();
  auto* pl = batch.labels.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const auto& ex = examples[rows[b]];
    std::vector<int64_t> seq = ex.prompt;
    seq.insert(seq.end(), ex.target.begin(), ex.target.end());
    const int64_t n = static_cast<int64_t>(seq.size()) - 1;  // inputs: all but the last token
    const int64_t first_answer = static_cast<int64_t>(ex.prompt.size()) - 1;  // predicts target[0]
    batch.prompt_lengths.push_back(static_cast<int64_t>(ex.prompt.size()));
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

KVPrefix batch_prefix(KnowledgeEncoderImpl& encoder, const PrefixBatch& batch, const LlamaForCausalLMImpl& llm) {
  const auto llm_dtype = llm.dtype();
  std::vector<KVPrefix> per_rank;
  for (size_t r = 0; r < batch.segment_ids.size(); ++r) {
    const auto llm_ids = r < batch.segment_llm_ids.size() ? batch.segment_llm_ids[r] : torch::Tensor();
    per_rank.push_back(encoder.forward(batch.segment_ids[r], batch.segment_mask[r], llm_ids));
  }
  KVPrefix prefix = concat_prefixes(per_rank);
  for (auto* v : {&prefix.keys, &prefix.values}) {
    for (auto& t : *v) t = t.to(llm_dtype);
  }
  return place_for_answer(encoder.config(), llm, prefix, batch.prompt_lengths);
}

torch::Tensor prefix_loss(LlamaForCausalLMImpl& llm, KnowledgeEncoderImpl& encoder, const PrefixBatch& batch) {
  const KVPrefix prefix = batch_prefix(encoder, batch, llm);
  LlamaForwardArgs args;
  args.prefix = &prefix;
  args.attention_mask = batch.mask;
  const auto hidden = llm.hidden_states(batch.ids, args);  // [B, S, H]
  // Only the answer positions need logits: [N, H] → [N, V] (a 32k vocabulary makes the full
  // [B, S, V] the largest tensor of the step).
  const auto flat_labels = batch.labels.view({-1});                        // [B·S]
  const auto positions = flat_labels.ne(-100).nonzero().view({-1});        // [N]
  const auto h = hidden.reshape({-1, hidden.size(-1)}).index_select(0, positions);  // [N, H]
  const auto logits = llm.logits(h);                                        // [N, V] fp32
  return torch::nn::functional::cross_entropy(logits, flat_labels.index_select(0, positions));
}

}  // namespace kvrag
