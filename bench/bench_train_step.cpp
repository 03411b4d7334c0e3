// One `kvrag train-prefix` optimizer step, timed, against the same step in PyTorch eager
// (bench/reference_train_step.py):
//
//   bench_train_step [--llm-hidden 256 --llm-layers 4 --llm-heads 8 --llm-kv-heads 4
//                     --llm-intermediate 688 --llm-vocab 512] [--enc-hidden 128 --enc-layers 2
//                     --enc-heads 4 --enc-intermediate 512 --enc-vocab 1000] [--prefix 10]
//                    [--batch 8 --segment-len 128 --prompt-len 32 --answer-len 8]
//                    [--threads 2 --repeats 5] [--reference bench/reference_train_step.py]
//
// The step: knowledge encoder over the segments → per-layer prefix → frozen LLaMA (fp32) →
// cross-entropy on the answer tokens → backward into the encoder → gradient clipping → AdamW.
// The random models are written once to a temporary folder (safetensors, HF names) and, with
// --reference, the Python side loads the same weights and inputs: the printed losses of the two
// first steps must agree, and the ratio python / kvrag is the speed-up (target ≥ 1.0).
// Timing: two warm-up steps, then the best of `repeats` steps (the least disturbed by other
// work on a shared machine), the same statistic on both sides.

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "model/weights.h"
#include "prefix/prefix_batch.h"
#include "train/train_state.h"

using namespace kvrag;

int main(int argc, char** argv) try {
  tune_malloc();  // as the kvrag binary does (core/malloc_tuning.h)
  bench::Args args(argc, argv,
                   {{"llm-hidden", "256"},
                    {"llm-layers", "4"},
                    {"llm-heads", "8"},
                    {"llm-kv-heads", "4"},
                    {"llm-intermediate", "688"},
                    {"llm-vocab", "512"},
                    {"enc-hidden", "128"},
                    {"enc-layers", "2"},
                    {"enc-heads", "4"},
                    {"enc-intermediate", "512"},
                    {"enc-vocab", "1000"},
                    {"prefix", "10"},
                    {"batch", "8"},
                    {"segment-len", "128"},
                    {"prompt-len", "32"},
                    {"answer-len", "8"},
                    {"threads", "2"},
                    {"repeats", "5"},
                    {"reference", ""}},
                   {});
  at::set_num_threads(static_cast<int>(args.integer("threads")));

  LlamaConfig lc;
  lc.vocab_size = args.integer("llm-vocab");
  lc.hidden_size = args.integer("llm-hidden");
  lc.intermediate_size = args.integer("llm-intermediate");
  lc.num_attention_heads = args.integer("llm-heads");
  lc.num_key_value_heads = args.integer("llm-kv-heads");
  lc.num_hidden_layers = args.integer("llm-layers");
  lc.head_dim = lc.hidden_size / lc.num_attention_heads;
  lc.max_position_embeddings = 1024;
  BertConfig bc;
  bc.vocab_size = args.integer("enc-vocab");
  bc.hidden_size = args.integer("enc-hidden");
  bc.num_attention_heads = args.integer("enc-heads");
  bc.num_hidden_layers = args.integer("enc-layers");
  bc.intermediate_size = args.integer("enc-intermediate");
  const int64_t P = args.integer("prefix"), B = args.integer("batch");

  LlamaForCausalLM llm(lc, torch::kFloat32);
  init_parameters(*llm, 0.02, 1);
  llm->freeze();
  KnowledgeEncoderOptions encoder_options;
  encoder_options.prefix_length = P;
  KnowledgeEncoder encoder(KnowledgeEncoderConfig::for_llm(bc, lc, "", encoder_options),
                           torch::kFloat32);
  encoder->init_fresh(2, 0.02);
  encoder->train();

  // Inputs: every row the same lengths (no padding), ids spread over the vocabularies.
  std::vector<PrefixExample> examples;
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < B; ++b) {
    PrefixExample ex;
    ex.prompt = bench::bench_ids(args.integer("prompt-len"), lc.vocab_size, 1, b);
    ex.target = bench::bench_ids(args.integer("answer-len"), lc.vocab_size, -1, b + 100);
    ex.segments = {KnowledgeTokens{
        bench::bench_ids(args.integer("segment-len"), bc.vocab_size, 2, b + 200), {}, false}};
    examples.push_back(ex);
    rows.push_back(b);
  }
  const auto batch = make_prefix_batch(examples, rows, 0);
  const auto flat = [](const torch::Tensor& t) {
    const auto c = t.contiguous();
    return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
  };

  OptimOptions optim;
  optim.lr = 1e-4;
  optim.weight_decay = 0.01;
  auto optimizer = make_adamw(*encoder, optim);

  // The same weights and inputs for the Python side.
  const auto dir =
      std::filesystem::temp_directory_path() / fmt::format("kvrag-bench-step-{}", getpid());
  std::filesystem::create_directories(dir);
  save_parameters(*llm, (dir / "llm.safetensors").string());
  save_parameters(*encoder, (dir / "encoder.safetensors").string());
  {
    nlohmann::json j = {{"llm", lc.to_json()},
                        {"encoder", encoder->config().to_json()},
                        {"ids", flat(batch.ids)},
                        {"labels", flat(batch.labels)},
                        {"segment_ids", flat(batch.segment_ids[0])},
                        {"batch", B},
                        {"lr", optim.lr},
                        {"weight_decay", optim.weight_decay},
                        {"clip", optim.clip_norm}};
    std::ofstream(dir / "inputs.json") << j.dump();
  }

  // As train_prefix does: libtorch's OpenMP team idle while BLAS's threads multiply.
  SerialIntraOpGuard serial(matmul_uses_blas_threads(torch::kFloat32));
  std::vector<double> losses;
  const auto step = [&] {
    // The step of train-prefix (prefix/prefix_batch.h): prefix, then the answer loss.
    // As train-prefix does, the prefix lives only until the loss is built: kept alive through
    // backward and the optimizer step (its autograd history with it), the step took ~40% longer.
    auto loss = [&] {
      const auto prefix = batch_prefix(*encoder, *llm, batch);
      return answer_loss(*llm, batch, &prefix);
    }();
    loss.backward();
    optimizer_step(*optimizer, optim.lr, optim.clip_norm);
    losses.push_back(loss.item<double>());
  };
  step();
  step();
  const double t = bench::best_time(static_cast<int>(args.integer("repeats")), step);
  const int64_t params = [&] {
    int64_t n = 0;
    for (const auto& p : encoder->parameters()) n += p.numel();
    return n;
  }();
  fmt::print(
      "kvrag train-prefix step: LLM {}×{} ({} kv heads, vocab {}), encoder {}×{} ({:.2f}M "
      "trainable), P={}, batch {}, segment {} + prompt {} + answer {} tokens, {} threads\n",
      lc.num_hidden_layers, lc.hidden_size, lc.num_key_value_heads, lc.vocab_size,
      bc.num_hidden_layers, bc.hidden_size, static_cast<double>(params) / 1e6, P, B,
      args.integer("segment-len"), args.integer("prompt-len"), args.integer("answer-len"),
      args.integer("threads"));
  fmt::print("kvrag:   {:.1f} ms/step ({:.1f} examples/s); losses of steps 1, 2: {:.6f} {:.6f}\n",
             t * 1e3, static_cast<double>(B) / t, losses[0], losses[1]);

  int rc = 0;
  if (!args.str("reference").empty()) {
    const std::string cmd = fmt::format(
        "/usr/bin/python3 {} --inputs {} --threads {} --repeats {} --json", args.str("reference"),
        dir.string(), args.integer("threads"), args.integer("repeats"));
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
      rc = pclose(p);
    }
    try {
      const auto j = nlohmann::json::parse(out.substr(out.rfind('{')));
      const double pt = j["step_s"].get<double>();
      fmt::print(
          "pytorch: {:.1f} ms/step ({:.1f} examples/s); losses of steps 1, 2: {:.6f} {:.6f}\n",
          pt * 1e3, static_cast<double>(B) / pt, j["losses"][0].get<double>(),
          j["losses"][1].get<double>());
      fmt::print("ratio pytorch/kvrag: {:.2f}x  (first-step loss difference {:.2e})\n", pt / t,
                 std::abs(j["losses"][0].get<double>() - losses[0]));
    } catch (const std::exception& e) {
      std::cerr << "reference failed (" << cmd << "): " << out << "\n";
      rc = 1;
    }
  }
  std::filesystem::remove_all(dir);
  return rc == 0 ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "bench_train_step: " << e.what() << "\n";
  return 1;
}
