// Time to first token (TTFT) of the three ways to hand a frozen LLM k retrieved segments:
//
//   context  the segments in the prompt: the LLM prefills k·S segment tokens + Q question tokens
//   encode   prefix mode, the knowledge encoder run on the k segments at question time; the LLM
//            then prefills the Q question tokens beside the k·S placed entries
//   store    prefix mode reading the k segments' prefixes from a prefix store (memory-mapped,
//            warm in the page cache, as for a question that retrieves popular segments), placed;
//            then the same prefill
//
//   bench_ttft --llm DIR [--dtype bf16] [--encoder-dtype bf16] [--store-dtype fp16]
//              [--segment-tokens 288] [--question-tokens 24] [--top-k 1,5,10] [--repeats 3]
//              [--threads 2] [--json]
//
// TTFT here is everything from the retrieved segment ids to the first token's logits: for
// context the prompt's prefill; for encode the encoder's forward on the k segments, the prefix
// concatenated in rank order, cast and placed (prefix/prefix_batch.h finish_prefix), and the
// prefill; for store the records read and widened (PrefixStore::get), then the same. Retrieval
// and tokenising are left out (the same in every mode). Median of --repeats after one warm-up.
//
// The knowledge encoder has the demo's architecture (readout "tokens": one entry per segment
// token, the LLM's embeddings added, keys placed at the answer) at the LLM's hidden size, as
// llm_embeddings requires: a 2-layer BERT of that width with one 64-dim head per 64 features,
// random weights (speed only; answers are not looked at). Inputs are ids spread over the
// vocabulary (bench_ids), the same in every mode. A context of more tokens than the LLM has
// positions is reported as not fitting, not truncated.
#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "bench_common.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "model/generation.h"
#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "model/weights.h"
#include "ops/cpu_isa.h"
#include "ops/threads.h"
#include "prefix/prefix_batch.h"
#include "prefix/prefix_store.h"

namespace {

using json = nlohmann::json;
using namespace kvrag;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stoll(item));
  KVRAG_CHECK(!out.empty(), "--top-k: give a list such as 1,5,10");
  return out;
}

// The demo's knowledge encoder architecture at `llm`'s width, random weights.
KnowledgeEncoder sized_encoder(const LlamaConfig& llm, int64_t segment_tokens, torch::Dtype dtype) {
  KnowledgeEncoderConfig c;
  c.encoder.vocab_size = 1024;
  c.encoder.hidden_size = llm.hidden_size;
  c.encoder.num_attention_heads = std::max<int64_t>(1, llm.hidden_size / 64);
  c.encoder.num_hidden_layers = 2;
  c.encoder.intermediate_size = 4 * llm.hidden_size;
  c.encoder.max_position_embeddings = segment_tokens;
  c.prefix_length = segment_tokens;
  c.readout = Readout::kTokens;
  c.llm_embeddings = true;
  c.segment_tokenizer = SegmentTokenizer::kLlm;
  c.key_position = KeyPosition::kAnswer;
  c.max_segment_tokens = segment_tokens;
  c.llm_layers = llm.num_hidden_layers;
  c.llm_kv_heads = llm.num_key_value_heads;
  c.llm_head_dim = llm.head_dim;
  c.llm_vocab_size = llm.vocab_size;
  KnowledgeEncoder encoder(c, dtype);
  encoder->init_fresh(/*seed=*/7, /*head_std=*/0.02);
  encoder->eval();
  return encoder;
}

int run(int argc, char** argv) {
  const bench::Args args(argc, argv,
                         {{"llm", ""},
                          {"dtype", "bf16"},
                          {"encoder-dtype", "bf16"},
                          {"store-dtype", "fp16"},
                          {"segment-tokens", "288"},
                          {"question-tokens", "24"},
                          {"top-k", "1,5,10"},
                          {"repeats", "3"},
                          {"threads", "2"}},
                         {"json"});
  const int threads = configure_threads(static_cast<int>(args.integer("threads")));
  KVRAG_CHECK(!args.str("llm").empty(), "give --llm DIR (an HF LLaMA checkpoint)");
  const int64_t S = args.integer("segment-tokens"), Q = args.integer("question-tokens");
  const int repeats = static_cast<int>(args.integer("repeats"));
  const auto ks = parse_list(args.str("top-k"));
  const int64_t k_max = *std::max_element(ks.begin(), ks.end());
  KVRAG_CHECK(S > 2 && Q > 1 && repeats > 0 && *std::min_element(ks.begin(), ks.end()) > 0,
              "bad --segment-tokens/--question-tokens/--repeats/--top-k");

  auto llm = load_llama(args.str("llm"), parse_model_dtype(args.str("dtype")));
  const auto& lc = llm->config();
  auto encoder = sized_encoder(lc, S, parse_model_dtype(args.str("encoder-dtype")));
  torch::NoGradGuard no_grad;

  // k_max segments: encoder ids, mask and the LLM piece of each entry.
  std::vector<std::vector<int64_t>> segment_ids;  // LLM pieces, for the context prompt
  auto enc_ids = torch::empty({k_max, S}, torch::kInt64);
  auto llm_ids = torch::empty({k_max, S}, torch::kInt64);
  for (int64_t s = 0; s < k_max; ++s) {
    segment_ids.push_back(bench::bench_ids(S, lc.vocab_size, -1, 100 + s));
    const auto pieces = torch::tensor(segment_ids.back(), torch::kInt64);
    llm_ids[s].copy_(pieces);
    enc_ids[s].copy_(pieces.remainder(encoder->config().encoder.vocab_size));
  }
  const auto mask = torch::ones({k_max, S}, torch::kInt64);
  const auto question = bench::bench_ids(Q, lc.vocab_size, lc.bos_token_id, 7);

  // The store: every segment's prefix as the encoder makes it, in --store-dtype.
  const std::string store_dir =
      (std::filesystem::temp_directory_path() / ("kvrag-bench-ttft-" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(store_dir);
  PrefixStoreHeader header;
  header.dtype = args.str("store-dtype");
  check_prefix_store_dtype(header.dtype, "--store-dtype");
  header.segments = k_max;
  header.layers = lc.num_hidden_layers;
  header.kv_heads = lc.num_key_value_heads;
  header.entries = S;
  header.head_dim = lc.head_dim;
  header.encoder_fingerprint = header.llm_fingerprint = "bench";
  {
    std::string records;
    for (int64_t s = 0; s < k_max; ++s) {
      append_prefix_records(
          encoder->forward(enc_ids.narrow(0, s, 1), mask.narrow(0, s, 1), llm_ids.narrow(0, s, 1)),
          header, records);
    }
    write_file_atomic(prefix_store_bin(store_dir), records);
    write_file_atomic(prefix_store_json(store_dir), header.to_json().dump() + "\n");
  }
  const auto store = PrefixStore::open(store_dir);

  GenerationOptions first;
  first.max_new_tokens = 1;
  first.stop_at_eos = false;
  const std::vector<int64_t> prompt_lengths = {Q};
  // Per rank r a [1, …] prefix, as the Answerer hands finish_prefix one batch row.
  const auto ranks = [](const KVPrefix& rows, int64_t k) {
    std::vector<KVPrefix> out(k);
    for (int64_t r = 0; r < k; ++r) {
      for (size_t l = 0; l < rows.keys.size(); ++l) {
        out[r].keys.push_back(rows.keys[l].narrow(0, r, 1));
        out[r].values.push_back(rows.values[l].narrow(0, r, 1));
      }
    }
    return out;
  };
  const auto time_ms = [&](const std::function<void()>& f) {
    f();  // warm-up
    std::vector<double> runs;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = Clock::now();
      f();
      runs.push_back(ms_since(t0));
    }
    return median(runs);
  };

  json rows = json::array();
  for (const int64_t k : ks) {
    json row = {{"top_k", k}};
    const int64_t context_tokens = k * S + Q;
    if (context_tokens + 1 <= lc.max_position_embeddings) {
      std::vector<int64_t> prompt = {lc.bos_token_id};
      for (int64_t s = 0; s < k; ++s)
        prompt.insert(prompt.end(), segment_ids[s].begin(), segment_ids[s].end());
      prompt.insert(prompt.end(), question.begin() + 1, question.end());
      row["context_ms"] = time_ms([&] { generate(*llm, {prompt}, first); });
    } else {
      row["context_ms"] = nullptr;  // does not fit the LLM's positions
    }
    row["context_tokens"] = context_tokens;
    row["encode_ms"] = time_ms([&] {
      const auto made =
          encoder->forward(enc_ids.narrow(0, 0, k), mask.narrow(0, 0, k), llm_ids.narrow(0, 0, k));
      const auto prefix = finish_prefix(encoder->config(), *llm, ranks(made, k), prompt_lengths);
      generate(*llm, {question}, first, &prefix);
    });
    std::vector<int64_t> ids(k);
    for (int64_t s = 0; s < k; ++s) ids[s] = s;
    row["store_ms"] = time_ms([&] {
      const auto prefix =
          finish_prefix(encoder->config(), *llm, ranks(store->get(ids), k), prompt_lengths);
      generate(*llm, {question}, first, &prefix);
    });
    row["prefix_entries"] = k * S;
    if (!row["context_ms"].is_null()) {
      row["context_over_store"] = row["context_ms"].get<double>() / row["store_ms"].get<double>();
      row["context_over_encode"] = row["context_ms"].get<double>() / row["encode_ms"].get<double>();
    }
    rows.push_back(row);
  }
  std::filesystem::remove_all(store_dir);

  int64_t encoder_params = 0;
  for (const auto& p : encoder->parameters()) encoder_params += p.numel();
  const json out = {{"llm", std::filesystem::path(args.str("llm")).filename().string()},
                    {"dtype", args.str("dtype")},
                    {"encoder_dtype", args.str("encoder-dtype")},
                    {"encoder_params", encoder_params},
                    {"store_dtype", header.dtype},
                    {"store_bytes_per_segment", header.record_bytes()},
                    {"segment_tokens", S},
                    {"question_tokens", Q},
                    {"threads", threads},
                    {"cpu", cpu_features()},
                    {"rows", rows}};
  if (args.flag("json")) {
    std::cout << out.dump() << std::endl;
    return 0;
  }
  std::cout << fmt::format(
      "{} {} ({} threads; {}), encoder {:.0f}M params {}, {}-token segments, {}-token question, "
      "store {} {:.2f} MB/segment; TTFT ms (median of {}):\n",
      out["llm"].get<std::string>(), args.str("dtype"), threads, cpu_features(),
      encoder_params / 1e6, args.str("encoder-dtype"), S, Q, header.dtype,
      header.record_bytes() / 1e6, repeats);
  std::cout << fmt::format("{:>5} {:>14} {:>12} {:>12} {:>16} {:>17}\n", "top-k", "context",
                           "encode", "store", "context/store", "context/encode");
  for (const auto& r : rows) {
    const auto num = [&](const char* name, const char* f) {
      return r.contains(name) && !r[name].is_null() ? fmt::format(f, r[name].get<double>())
                                                    : std::string("n/a");
    };
    std::cout << fmt::format(
        "{:>5} {:>14} {:>12.1f} {:>12.1f} {:>16} {:>17}\n", r["top_k"].get<int64_t>(),
        r["context_ms"].is_null() ? fmt::format("n/a ({} tok)", r["context_tokens"].get<int64_t>())
                                  : fmt::format("{:.1f}", r["context_ms"].get<double>()),
        r["encode_ms"].get<double>(), r["store_ms"].get<double>(),
        num("context_over_store", "{:.1f}×"), num("context_over_encode", "{:.1f}×"));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return kvrag::bench::guarded_main("bench_ttft", argc, argv, run);
}
