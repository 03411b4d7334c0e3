// Prefill and decode throughput of the C++ LLaMA (kvrag::generate with its KV cache).
//
//   bench_llama --model DIR [--dtype fp32|bf16|int8] [--prompt-len 128] [--new-tokens 64] [--json]
//               [--batch 1] [--stream-mb 1024] [--isa generic|avx2|avx512|avx512vnni|avx512bf16]
//   bench_llama --config random-100m --save DIR [--save-only]   # write a random HF checkpoint
//
// Timing, identical in bench/reference_llama.py: after a warm-up generation of 4 tokens, the
// best of --repeats runs of generate(max_new_tokens=1) is the prefill time (prompt forward +
// first token); the best of --repeats runs of generate(max_new_tokens=N) minus that is the time
// of the N-1 decode steps. Greedy, no early stop, batch of one prompt (or --batch copies of it).
//
// Also reported: the bytes of weights a decode step reads (parameters in the run dtype plus int8
// weights with their scales; an untied embedding table, of which a step reads one row, not), the
// decode's effective bandwidth (those bytes × steps/s: a step of a --batch reads them once), the
// peak resident memory after loading and at the end (VmHWM), and, with --stream-mb, the rate at
// which this machine reads memory in the same run: decode is memory-bound, so effective / read
// bandwidth says how close to the physical limit it runs. Two read figures: the best of five
// reads of the buffer after the runs (bench::read_bandwidth, "memory read"), and, pairwise, a
// read as long as each decode run right after it (one more decode run then precedes the pairs,
// before the buffer exists, for the peak RSS); the median pair's ratio is printed. --isa runs
// the kernels of a lesser CPU (ops/cpu_isa.h).
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "bench_common.h"
#include "bench_memory.h"
#include "core/error.h"
#include "model/generation.h"
#include "model/layers.h"
#include "model/llama.h"
#include "model/weights.h"
#include "ops/cpu_isa.h"
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
                          {"threads", "2"},
                          {"stream-mb", "0"},
                          {"isa", ""}},
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

  bench::set_isa(args.str("isa"));
  const std::string dtype_name = args.str("dtype");
  const auto dtype = parse_model_dtype(dtype_name);
  const double t_load0 = bench::now_seconds();
  auto model = load_llama(dir, dtype);
  const double t_load = bench::now_seconds() - t_load0;
  const int64_t peak_after_load = bench::proc_status_bytes("VmHWM");
  const auto& config = model->config();
  int64_t params = 0, weight_bytes = 0;
  for (const auto& item : model->named_parameters()) {
    const auto& p = item.value();
    params += p.numel();
    // A decode step reads one row of an untied embedding table; a tied one is lm_head too.
    if (item.key() == "model.embed_tokens.weight" && !model->lm_head.is_empty()) continue;
    weight_bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  for (const auto& m : model->modules(/*include_self=*/false)) {
    if (const auto* linear = dynamic_cast<const LinearImpl*>(m.get()); linear && linear->q8) {
      params += linear->q8->rows * linear->q8->cols;
      weight_bytes += linear->q8->bytes();
    }
  }

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
  const auto timed_generation = [&] {
    const double t0 = bench::now_seconds();
    tokens = generate(*model, prompts, options)[0].tokens;
    return bench::now_seconds() - t0;
  };
  // Decode GB/s of weights of a run that took t_run seconds, prefill included (null if <= 0:
  // only when the machine is too noisy for N).
  const auto decode_gb_s = [&](double t_run) {
    const double t = t_run - t_prefill;
    return t > 0 ? json(static_cast<double>(weight_bytes) * (N - 1) / t / 1e9) : json();
  };
  double t_total = timed_generation();
  const int64_t peak_rss = bench::proc_status_bytes("VmHWM");  // before the stream's buffer
  const int64_t stream_mb = args.integer("stream-mb");
  // With --stream-mb, each further run is paired with a read stream of the same length right
  // after it, and the pair gives decode GB/s ÷ stream GB/s: both the mean rate over a few
  // seconds, a moment apart. The best decode against the best of short reads minutes apart
  // (read_gb_s, kept) moves by ±10 points from run to run here.
  std::vector<float> stream_buffer(static_cast<size_t>(stream_mb << 20) / sizeof(float), 1.0f);
  json pairs = json::array();
  for (int r = stream_mb > 0 ? 0 : 1; r < repeats; ++r) {
    const double t_run = timed_generation();
    t_total = std::min(t_total, t_run);
    if (stream_mb == 0) continue;
    const double stream_gb_s = bench::read_rate_for(stream_buffer, t_run);
    const json run_gb_s = decode_gb_s(t_run);
    pairs.push_back(
        {{"decode_gb_s", run_gb_s},
         {"read_gb_s", stream_gb_s},
         {"ratio", run_gb_s.is_null() ? json() : json(run_gb_s.get<double>() / stream_gb_s)}});
  }
  const double t_decode = t_total - t_prefill;
  const double read_gb_s = stream_mb > 0 ? bench::read_bandwidth(stream_buffer) : 0.0;
  const json decode_tok_s =
      t_decode > 0 ? json(static_cast<double>(B * (N - 1)) / t_decode) : json();
  std::vector<double> ratios;
  for (const auto& p : pairs) {
    if (!p["ratio"].is_null()) ratios.push_back(p["ratio"].get<double>());
  }
  std::sort(ratios.begin(), ratios.end());
  const size_t n_ratios = ratios.size();
  const json paired_ratio = n_ratios == 0 ? json()
                            : n_ratios % 2 == 1
                                ? json(ratios[n_ratios / 2])
                                : json((ratios[n_ratios / 2 - 1] + ratios[n_ratios / 2]) / 2);

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
      {"load_s", t_load},
      {"weight_bytes", weight_bytes},
      {"decode_gb_s", decode_gb_s(t_total)},
      {"read_gb_s", stream_mb > 0 ? json(read_gb_s) : json()},
      {"paired", pairs},
      {"paired_ratio", paired_ratio},  // the median pair's decode ÷ read stream
      {"peak_rss_after_load", peak_after_load},
      {"peak_rss", peak_rss},
      {"cpu", cpu_features()},
      {"isa", cpu_isa_name(cpu_isa())},
  };
  if (args.flag("json")) {
    std::cout << out.dump() << std::endl;
  } else {
    std::cout << fmt::format(
        "{} {} ({} params, {:.2f} GB of weights a step reads, {} threads; {}; kernels: {}): "
        "prefill {:.1f} "
        "tok/s, decode {:.1f} tok/s = {:.1f} GB/s of weights (memory read: {:.1f} GB/s), peak "
        "RSS {:.2f} GB\n",
        out["model"].get<std::string>(), dtype_name, params, weight_bytes / 1e9, threads,
        out["cpu"].get<std::string>(), out["isa"].get<std::string>(),
        out["prefill_tok_s"].get<double>(),
        decode_tok_s.is_null() ? 0.0 : decode_tok_s.get<double>(),
        t_decode > 0 ? out["decode_gb_s"].get<double>() : 0.0, read_gb_s,
        out["peak_rss"].get<int64_t>() / 1e9);
    if (!paired_ratio.is_null()) {
      std::string each;
      for (const auto& p : pairs) {
        if (p["ratio"].is_null()) continue;
        each += fmt::format("{}{:.1f} of {:.1f} GB/s", each.empty() ? "" : ", ",
                            p["decode_gb_s"].get<double>(), p["read_gb_s"].get<double>());
      }
      std::cout << fmt::format(
          "decode runs each paired with a read stream as long: median {:.0f}% of the stream "
          "({})\n",
          100 * paired_ratio.get<double>(), each);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return kvrag::bench::guarded_main("bench_llama", argc, argv, run);
}
