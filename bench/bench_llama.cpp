// Prefill and decode throughput of the C++ LLaMA (kvrag::generate with its KV cache).
//
//   bench_llama --model DIR [--dtype fp32|bf16] [--prompt-len 128] [--new-tokens 64] [--json]
//   bench_llama --config random-100m --save DIR [--save-only]   # write a random HF checkpoint
//
// Timing, identical in bench/reference_llama.py: after a warm-up generation of 4 tokens, the
// best of --repeats runs of generate(max_new_tokens=1) is the prefill time (prompt forward +
// first token); the best of --repeats runs of generate(max_new_tokens=N) minus that is the time
// of the N-1 decode steps. Greedy, no early stop, batch of one prompt (or --batch copies of it).
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "core/error.h"
#include "model/generation.h"
#include "model/llama.h"
#include "model/weights.h"
#include "ops/threads.h"

namespace {

using json = nlohmann::json;
using namespace kvrag;

// Named random configurations (weights ~ N(0, 0.02), seeded).
LlamaConfig named_config(const std::string& name) {
  LlamaConfig c;
  if (name == "random-100m") {  // ~110M parameters: 85M in the layers, 2 × 24.6M embeddings
    c.vocab_size = 32000;
    c.hidden_size = 768;
    c.intermediate_size = 2048;
    c.num_attention_heads = 12;
    c.num_key_value_heads = 12;
    c.num_hidden_layers = 12;
  } else if (name == "random-small") {  // ~8M parameters, for quick runs
    c.vocab_size = 4096;
    c.hidden_size = 256;
    c.intermediate_size = 688;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 4;
    c.num_hidden_layers = 6;
  } else {
    fail("unknown --config {} (random-100m, random-small)", name);
  }
  c.head_dim = c.hidden_size / c.num_attention_heads;
  c.max_position_embeddings = 2048;
  c.rms_norm_eps = 1e-5;
  return c;
}

// Writes DIR/config.json and DIR/model.safetensors (fp32) for `config`, randomly initialised.
void write_random_checkpoint(const LlamaConfig& config, const std::string& dir) {
  std::filesystem::create_directories(dir);
  LlamaForCausalLM model(config, torch::kFloat32);
  init_parameters(*model, 0.02, /*seed=*/1234);
  save_parameters(*model, dir + "/model.safetensors");
  std::ofstream(dir + "/config.json") << config.to_json().dump(2) << "\n";
}

int run(int argc, char** argv) {
  const bench::Args args(argc, argv,
                         {{"model", ""},
                          {"config", ""},
                          {"save", ""},
                          {"dtype", "fp32"},
                          {"prompt-len", "128"},
                          {"new-tokens", "64"},
                          {"batch", "1"},
                          {"repeats", "3"},
                          {"threads", "2"}},
                         {"json", "save-only"});
  const int threads = configure_threads(static_cast<int>(args.integer("threads")));
  std::string dir = args.str("model");
  if (!args.str("config").empty()) {
    KVRAG_CHECK(!args.str("save").empty(), "--config needs --save DIR (the Python side reads it)");
    dir = args.str("save");
    write_random_checkpoint(named_config(args.str("config")), dir);
    if (args.flag("save-only")) return 0;
  }
  KVRAG_CHECK(!dir.empty(), "give --model DIR or --config NAME --save DIR");

  const std::string dtype_name = args.str("dtype");
  KVRAG_CHECK(dtype_name == "fp32" || dtype_name == "bf16", "--dtype must be fp32 or bf16");
  const auto dtype = dtype_name == "bf16" ? torch::kBFloat16 : torch::kFloat32;
  auto model = load_llama(dir, dtype);
  const auto& config = model->config();
  int64_t params = 0;
  for (const auto& p : model->parameters()) params += p.numel();

  const int64_t T = args.integer("prompt-len"), N = args.integer("new-tokens");
  const int64_t B = args.integer("batch");
  const int repeats = static_cast<int>(args.integer("repeats"));
  KVRAG_CHECK(T > 0 && N > 1 && B > 0 && repeats > 0,
              "bad --prompt-len/--new-tokens/--batch/--repeats");
  const std::vector<std::vector<int64_t>> prompts(
      B, bench::bench_ids(T, config.vocab_size, config.bos_token_id));

  GenerationOptions options;
  options.stop_at_eos = false;  // every run decodes exactly N tokens
  options.max_new_tokens = static_cast<int>(N);
  GenerationOptions first = options, warm_up = options;
  first.max_new_tokens = 1;
  warm_up.max_new_tokens = static_cast<int>(std::min<int64_t>(N, 4));
  generate(*model, prompts, warm_up);

  std::vector<int64_t> tokens;  // row 0's, for the cross-check with the Python reference
  const double t_prefill = bench::best_time(repeats, [&] { generate(*model, prompts, first); });
  const double t_total =
      bench::best_time(repeats, [&] { tokens = generate(*model, prompts, options)[0].tokens; });
  // Can come out <= 0 only when the machine is too noisy for N; reported as null then.
  const double t_decode = t_total - t_prefill;
  const json decode_tok_s =
      t_decode > 0 ? json(static_cast<double>(B * (N - 1)) / t_decode) : json();

  const json out = {
      {"impl", "cpp"},
      {"model", args.str("config").empty() ? std::filesystem::path(dir).filename().string()
                                           : args.str("config")},
      {"dtype", dtype_name},
      {"threads", threads},
      {"params", params},
      {"batch", B},
      {"prompt_len", T},
      {"new_tokens", N},
      {"prefill_s", t_prefill},
      {"decode_s", t_decode},
      {"prefill_tok_s", static_cast<double>(B * T) / t_prefill},
      {"decode_tok_s", decode_tok_s},
      {"tokens", tokens},
  };
  if (args.flag("json")) {
    std::cout << out.dump() << std::endl;
  } else {
    std::cout << fmt::format(
        "{} {} ({} params, {} threads): prefill {:.1f} tok/s, decode {} tok/s\n",
        out["model"].get<std::string>(), dtype_name, params, threads,
        out["prefill_tok_s"].get<double>(), decode_tok_s.dump());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_llama: " << e.what() << "\n";
    return 1;
  }
}
