// BERT encoding throughput of the C++ BertModel, and the machine's matmul peak.
//
//   bench_bert --config bert-base --save DIR [--save-only]     # write a random HF checkpoint
//   bench_bert --model DIR [--dtype fp32|bf16|int8] [--batch 16] [--seq-len 288] [--json]
//              [--isa generic|avx2|avx512|avx512vnni|avx512bf16]  # kernels of a lesser CPU
//   bench_bert --peak [--json]                                 # torch::matmul GFLOP/s
//
// Timing, identical in bench/reference_bert.py: one warm-up forward of the whole batch, then the
// best of --repeats forwards. Every sequence is --seq-len real tokens (no padding). GFLOP/s
// counts the encoder's matrix products: 2·(its linear weights)·tokens plus attention's
// 4·T²·hidden per sequence and layer.
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "core/error.h"
#include "model/bert.h"
#include "model/weights.h"
#include "ops/cpu_isa.h"
#include "ops/threads.h"

namespace {

using json = nlohmann::json;
using namespace kvrag;

BertConfig named_config(const std::string& name) {
  BertConfig c;
  c.vocab_size = 30522;
  if (name == "bert-base") {  // 110M parameters, 85M of them in the encoder
    c.hidden_size = 768;
    c.num_hidden_layers = 12;
    c.num_attention_heads = 12;
    c.intermediate_size = 3072;
  } else if (name == "bert-small") {  // 4 layers of 512 (as google/bert_uncased_L-4_H-512_A-8)
    c.hidden_size = 512;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.intermediate_size = 2048;
  } else {
    fail("unknown --config {} (bert-base, bert-small)", name);
  }
  return c;
}

void write_random_checkpoint(const BertConfig& config, const std::string& dir) {
  std::filesystem::create_directories(dir);
  BertModel model(config, torch::kFloat32, /*with_pooler=*/false);
  init_parameters(*model, 0.02, /*seed=*/4321);
  save_parameters(*model, dir + "/model.safetensors");
  std::ofstream(dir + "/config.json") << config.to_json().dump(2) << "\n";
}

// GFLOP/s of torch::matmul on n×n matrices of `dtype` (best of `repeats` after a warm-up).
double matmul_gflops(torch::Dtype dtype, int64_t n, int repeats) {
  torch::NoGradGuard no_grad;
  const auto a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
  torch::matmul(a, b);
  const double t = bench::best_time(repeats, [&] { torch::matmul(a, b); });
  return 2.0 * n * n * n / t / 1e9;
}

int run(int argc, char** argv) {
  const bench::Args args(argc, argv,
                         {{"model", ""},
                          {"config", ""},
                          {"save", ""},
                          {"dtype", "fp32"},
                          {"batch", "16"},
                          {"seq-len", "288"},
                          {"repeats", "2"},
                          {"threads", "2"},
                          {"peak-n", "2048"},
                          {"isa", ""}},
                         {"json", "save-only", "peak"});
  const int threads = configure_threads(static_cast<int>(args.integer("threads")));
  if (args.flag("peak")) {
    // fp32 at the requested size; bf16 at a size that stays quick where bf16 has no fast kernel.
    const int64_t n = args.integer("peak-n");
    const double fp32 = matmul_gflops(torch::kFloat32, n, 5);
    const double bf16_small = matmul_gflops(torch::kBFloat16, 512, 1);
    const double bf16 = bf16_small > 20.0 ? matmul_gflops(torch::kBFloat16, n, 5) : bf16_small;
    const json out = {{"impl", "cpp"},
                      {"kind", "peak"},
                      {"threads", threads},
                      {"fp32_gflops", fp32},
                      {"bf16_gflops", bf16},
                      {"n", n},
                      {"bf16_n", bf16_small > 20.0 ? n : 512},
                      {"native_bf16_matmul", native_bf16_matmul()}};
    if (args.flag("json")) {
      std::cout << out.dump() << std::endl;
    } else {
      std::cout << fmt::format("matmul peak: fp32 {:.1f} GFLOP/s, bf16 {:.1f} GFLOP/s\n", fp32,
                               bf16);
    }
    return 0;
  }

  std::string dir = args.str("model");
  if (!args.str("config").empty()) {
    KVRAG_CHECK(!args.str("save").empty(), "--config needs --save DIR (the Python side reads it)");
    dir = args.str("save");
    write_random_checkpoint(named_config(args.str("config")), dir);
    if (args.flag("save-only")) return 0;
  }
  KVRAG_CHECK(!dir.empty(), "give --model DIR, --config NAME --save DIR, or --peak");
  bench::set_isa(args.str("isa"));
  const std::string dtype_name = args.str("dtype");
  auto model = load_bert(dir, parse_model_dtype(dtype_name));
  const auto& c = model->config();

  const int64_t B = args.integer("batch"), T = args.integer("seq-len");
  const int repeats = static_cast<int>(args.integer("repeats"));
  std::vector<int64_t> flat;
  for (int64_t b = 0; b < B; ++b) {
    const auto row = bench::bench_ids(T, c.vocab_size, /*[CLS]=*/101, /*salt=*/b);
    flat.insert(flat.end(), row.begin(), row.end());
  }
  const auto ids = torch::tensor(flat, torch::kInt64).view({B, T});
  const auto mask = torch::ones({B, T}, torch::kInt64);

  c10::InferenceMode inference;
  torch::Tensor pooled;  // mean-pooled embedding of sequence 0, for the cross-check
  auto encode = [&] {
    const auto h = model->forward(ids, mask).last_hidden_state;  // [B, T, H]
    pooled = h.select(0, 0).to(torch::kFloat32).mean(0);         // [H]
  };
  encode();  // warm-up
  const double t = bench::best_time(repeats, encode);

  const double H = c.hidden_size, I = c.intermediate_size, L = c.num_hidden_layers;
  const double linear_params = L * (4 * H * H + 2 * H * I);
  const double flops = 2.0 * linear_params * B * T + L * 4.0 * B * T * T * H;
  std::vector<double> probe(pooled.data_ptr<float>(), pooled.data_ptr<float>() + pooled.numel());
  const json out = {
      {"impl", "cpp"},
      {"model", args.str("config").empty() ? std::filesystem::path(dir).filename().string()
                                           : args.str("config")},
      {"dtype", dtype_name},
      {"isa", cpu_isa_name(cpu_isa())},
      {"cpu_features", cpu_features()},
      {"threads", threads},
      {"batch", B},
      {"seq_len", T},
      {"seconds", t},
      {"tok_s", B * T / t},
      {"gflops", flops / t / 1e9},
      {"flops_per_pass", flops},
      {"probe", probe},
  };
  if (args.flag("json")) {
    std::cout << out.dump() << std::endl;
  } else {
    std::cout << fmt::format("{} {} batch {}×{} ({} kernels; {}): {:.1f} tok/s, {:.1f} GFLOP/s\n",
                             out["model"].get<std::string>(), dtype_name, B, T,
                             cpu_isa_name(cpu_isa()), cpu_features(), B * T / t, flops / t / 1e9);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return kvrag::bench::guarded_main("bench_bert", argc, argv, run);
}
