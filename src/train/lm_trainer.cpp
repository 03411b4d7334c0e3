#include "train/lm_trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "model/layers.h"
#include "model/llama.h"
#include "model/weights.h"
#include "text/sentencepiece_tokenizer.h"
#include "train/data_parallel.h"
#include "train/train_state.h"

namespace kvrag {

namespace fs = std::filesystem;

namespace {

constexpr int64_t kIgnore = -100;  // label of positions that are not predicted

// Packed training rows: ids [R, T], labels [R, T] (labels[t] = the token after ids[t], or
// kIgnore for padding and for the BOS that starts the next example) and loss weights [R, T].
struct PackedRows {
  torch::Tensor ids, labels, weights;
  int64_t tokens = 0;  // predicted positions
};

// An example's ids and the index of its first answer token (npos when it has none).
struct Example {
  std::vector<TokenId> ids;
  size_t answer_start = std::string::npos;
};

PackedRows pack(const std::vector<Example>& examples, int64_t context, int64_t pad_id,
                int64_t bos_id, double answer_weight) {
  // Each row holds a sequence of up to context + 1 tokens: inputs are [0, T), targets [1, T].
  const int64_t span = context + 1;
  std::vector<std::vector<int64_t>> rows;
  std::vector<std::vector<char>> answer_rows;  // whether each token is an answer token
  std::vector<int64_t> current;
  std::vector<char> current_answer;
  auto flush = [&] {
    if (current.size() > 1) {
      rows.push_back(std::move(current));
      answer_rows.push_back(std::move(current_answer));
    }
    current.clear();
    current_answer.clear();
  };
  for (const auto& ex : examples) {
    const auto& ids = ex.ids;
    if (static_cast<int64_t>(current.size() + ids.size()) > span) flush();
    for (size_t i = 0; i < ids.size(); i += static_cast<size_t>(span)) {
      const size_t end = std::min(ids.size(), i + static_cast<size_t>(span));
      if (i > 0) flush();
      current.insert(current.end(), ids.begin() + i, ids.begin() + end);
      for (size_t k = i; k < end; ++k) current_answer.push_back(k >= ex.answer_start);
    }
  }
  flush();
  const int64_t n = static_cast<int64_t>(rows.size());
  PackedRows out;
  out.ids = torch::full({n, context}, pad_id, torch::kInt64);
  out.labels = torch::full({n, context}, kIgnore, torch::kInt64);
  out.weights = torch::zeros({n, context}, torch::kFloat32);
  auto ids = out.ids.accessor<int64_t, 2>();
  auto labels = out.labels.accessor<int64_t, 2>();
  auto weights = out.weights.accessor<float, 2>();
  for (int64_t r = 0; r < n; ++r) {
    const auto& row = rows[r];
    for (size_t t = 0; t + 1 < row.size(); ++t) {
      ids[r][t] = row[t];
      if (row[t + 1] != bos_id) {
        labels[r][t] = row[t + 1];
        weights[r][t] = static_cast<float>(answer_rows[r][t + 1] ? answer_weight : 1.0);
        ++out.tokens;
      }
    }
  }
  return out;
}

void export_model(LlamaForCausalLM& model, const std::string& out_dir,
                  const std::string& tokenizer_path) {
  nlohmann::json config = model->config().to_json();
  config["model_type"] = "llama";
  config["architectures"] = {"LlamaForCausalLM"};
  config["torch_dtype"] = "float32";
  save_parameters(*model, out_dir + "/model.safetensors", torch::kFloat32);
  write_file_atomic(out_dir + "/tokenizer.model", read_file(tokenizer_path));
  // last: marks a complete export
  write_file_atomic(out_dir + "/config.json", config.dump(2) + "\n");
}

}  // namespace

LlamaConfig lm_preset(const std::string& name, int64_t vocab_size, int64_t max_positions) {
  LlamaConfig c;
  c.vocab_size = vocab_size;
  c.max_position_embeddings = max_positions;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  if (name == "micro") {
    c.hidden_size = 64;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 2;
    c.intermediate_size = 128;
  } else if (name == "mini") {  // tiny's width, half its depth: 2 layers still learn to copy
    c.hidden_size = 128;
    c.num_hidden_layers = 2;
    c.num_attention_heads = 4;
    c.intermediate_size = 384;
  } else if (name == "tiny") {
    c.hidden_size = 128;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.intermediate_size = 384;
  } else if (name == "small") {
    c.hidden_size = 256;
    c.num_hidden_layers = 6;
    c.num_attention_heads = 8;
    c.intermediate_size = 704;
  } else {
    fail("train-lm: unknown preset '{}' (micro | mini | tiny | small)", name);
  }
  c.num_key_value_heads = c.num_attention_heads;
  c.head_dim = c.hidden_size / c.num_attention_heads;
  return c;
}

std::vector<std::string> read_lm_examples(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KVRAG_CHECK(in.good(), "{}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find("\n\n", pos);
    if (end == std::string::npos) end = text.size();
    std::string ex = text.substr(pos, end - pos);
    while (!ex.empty() && (ex.back() == '\n' || ex.back() == '\r')) ex.pop_back();
    while (!ex.empty() && ex.front() == '\n') ex.erase(ex.begin());
    if (!ex.empty()) out.push_back(std::move(ex));
    pos = end + 2;
  }
  KVRAG_CHECK(!out.empty(), "{}: no examples (expected texts separated by blank lines)", path);
  return out;
}

LmTrainResult train_lm(const LmTrainOptions& o) {
  o.optim.validate();
  KVRAG_CHECK(!o.out_dir.empty(), "train-lm: --out is required");
  // N copies would each train the whole model into the same folder.
  KVRAG_CHECK(!Communicator::world().distributed(),
              "train-lm does not train data parallel: run it without mpirun");
  KVRAG_CHECK(o.context >= 8, "train-lm: context must be at least 8 tokens (got {})", o.context);
  KVRAG_CHECK(o.resume_every > 0, "train-lm: resume_every must be positive");
  KVRAG_CHECK(o.answer_weight > 0, "train-lm: answer weight must be positive (got {})",
              o.answer_weight);
  // fp32 training: the products run on BLAS's own threads (layers.h, SerialIntraOpGuard); an
  // OpenMP team beside them made a step 2.4x slower on 2 cores.
  SerialIntraOpGuard serial;
  SentencePieceTokenizer tokenizer(o.tokenizer_path);
  // Answering reads longer inputs (a passage, the question, the answer) than a training row
  // may hold: the preset allows at least 512 positions.
  LlamaConfig config = o.config_path.empty()
                           ? lm_preset(o.preset, tokenizer.vocab_size(), std::max(o.context, 512))
                           : LlamaConfig::load(o.config_path);
  KVRAG_CHECK(tokenizer.vocab_size() <= config.vocab_size,
              "train-lm: {} has {} pieces but the model's vocab_size is {}", o.tokenizer_path,
              tokenizer.vocab_size(), config.vocab_size);
  KVRAG_CHECK(config.max_position_embeddings >= o.context,
              "train-lm: context {} exceeds max_position_embeddings {}", o.context,
              config.max_position_embeddings);
  config.bos_token_id = tokenizer.bos_id();
  config.eos_token_ids = {tokenizer.eos_id()};

  // Data: whole examples with BOS … EOS, packed into rows.
  const auto texts = read_lm_examples(o.text_path);
  std::vector<Example> examples;
  examples.reserve(texts.size());
  static const std::string kAnswer = "Answer:";
  for (const auto& t : texts) {
    Example ex;
    ex.ids = tokenizer.encode(t, /*add_special=*/true);
    const size_t at = t.rfind(kAnswer);
    if (o.answer_weight != 1.0 && at != std::string::npos && (at == 0 || t[at - 1] == '\n')) {
      // The prompt encoded alone gives the ids the whole example starts with (no dummy prefix;
      // see text/sentencepiece_trainer.h); everything after them is the answer (and EOS).
      const auto prompt = tokenizer.encode(t.substr(0, at + kAnswer.size()), /*add_special=*/true);
      if (prompt.size() <= ex.ids.size() &&
          std::equal(prompt.begin(), prompt.end(), ex.ids.begin())) {
        ex.answer_start = prompt.size();
      }
    }
    ex.ids.push_back(tokenizer.eos_id());
    examples.push_back(std::move(ex));
  }
  const int64_t pad = tokenizer.pad_id() >= 0 ? tokenizer.pad_id() : tokenizer.eos_id();
  const PackedRows data = pack(examples, o.context, pad, tokenizer.bos_id(), o.answer_weight);
  const int64_t n_rows = data.ids.size(0);
  const int64_t per_step = static_cast<int64_t>(o.optim.batch_size) * o.optim.accumulation;
  const int64_t steps_per_epoch = (n_rows + per_step - 1) / per_step;
  int64_t total_steps = steps_per_epoch * o.optim.epochs;
  if (o.max_steps > 0) total_steps = std::min(total_steps, o.max_steps);

  fs::create_directories(o.out_dir);
  LlamaForCausalLM model(config, torch::kFloat32);
  init_parameters(*model, o.init_std, o.optim.seed);
  auto optimizer = make_adamw(*model, o.optim);
  LrSchedule schedule(o.optim, total_steps);

  LmTrainResult result;
  result.rows = n_rows;
  result.tokens = data.tokens;
  result.steps = total_steps;
  int64_t step = 0;
  nlohmann::json state;
  if (load_resume_point(o.out_dir, *model, *optimizer, &state)) {
    step = state.value("step", int64_t(0));
    KVRAG_CHECK(state.value("total_steps", int64_t(-1)) == total_steps &&
                    state.value("rows", int64_t(-1)) == n_rows,
                "train-lm: {}/resume belongs to a different run (steps or data differ); remove it "
                "to start over",
                o.out_dir);
    if (state.contains("schedule")) schedule.load_state(state["schedule"]);
    result.resumed = true;
  }

  ProgressOptions po;
  po.label = "train-lm";
  po.unit = "steps";
  po.total_items = total_steps;
  po.start_items = step;
  po.enabled = o.progress;
  ProgressReporter progress(po);
  std::deque<double> recent;
  model->train();
  auto checkpoint = [&] {
    save_resume_point(o.out_dir, *model, *optimizer,
                      {{"step", step},
                       {"total_steps", total_steps},
                       {"rows", n_rows},
                       {"schedule", schedule.state()},
                       {"final_loss", result.final_loss}});
  };
  while (step < total_steps) {
    const int64_t epoch = step / steps_per_epoch;
    const auto order = epoch_order(n_rows, o.optim.seed, epoch);
    const int64_t in_epoch = step % steps_per_epoch;
    double loss_sum = 0;
    int64_t predicted = 0;
    for (int a = 0; a < o.optim.accumulation; ++a) {
      const int64_t begin = in_epoch * per_step + a * o.optim.batch_size;
      const int64_t end = std::min(n_rows, begin + o.optim.batch_size);
      if (begin >= end) break;
      const auto index =
          torch::tensor(std::vector<int64_t>(order.begin() + begin, order.begin() + end));
      const auto ids = data.ids.index_select(0, index);          // [B, T]
      const auto labels = data.labels.index_select(0, index);    // [B, T]
      const auto weights = data.weights.index_select(0, index);  // [B, T]
      const int64_t n = (labels != kIgnore).sum().item<int64_t>();
      if (n == 0) continue;
      const auto logits = model->forward(ids);  // [B, T, V]
      // Per token, then weighted, summed and divided by the step's row capacity, so
      // accumulation weighs every predicted token equally.
      const auto per_token = torch::nn::functional::cross_entropy(
          logits.reshape({-1, logits.size(-1)}), labels.reshape({-1}),
          // [B·T]
          torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnore).reduction(
              torch::kNone));
      const auto loss = per_token.sum();
      ((per_token * weights.reshape({-1})).sum() / static_cast<double>(per_step * o.context))
          .backward();
      loss_sum += loss.item<double>();
      predicted += n;
    }
    const double mean = predicted > 0 ? loss_sum / predicted : 0;
    optimizer_step(*optimizer, schedule.lr(step), o.optim.clip_norm);
    ++step;
    if (recent.empty() && result.first_loss == 0) result.first_loss = mean;
    recent.push_back(mean);
    if (recent.size() > 20) recent.pop_front();
    result.final_loss = std::accumulate(recent.begin(), recent.end(), 0.0) / recent.size();
    progress.set_note(fmt::format("loss {:.3f}  lr {:.1e}", mean, schedule.lr(step - 1)));
    progress.update(0, step);
    const bool stop = o.stop_after_steps > 0 && step >= o.stop_after_steps;
    if (step % o.resume_every == 0 || step == total_steps || stop) checkpoint();
    if (stop && step < total_steps) return result;
  }
  progress.finish(0, step);
  if (recent.empty()) result.final_loss = state.value("final_loss", 0.0);
  result.finished = true;
  export_model(model, o.out_dir, o.tokenizer_path);
  write_file_atomic(o.out_dir + "/train_log.json",
                    nlohmann::json({{"steps", total_steps},
                                    {"rows", n_rows},
                                    {"tokens_per_epoch", data.tokens},
                                    {"final_loss", result.final_loss},
                                    {"config", config.to_json()},
                                    {"optim", o.optim.to_json()},
                                    {"context", o.context},
                                    {"answer_weight", o.answer_weight}})
                            .dump(2) +
                        "\n");
  return result;
}

}  // namespace kvrag
