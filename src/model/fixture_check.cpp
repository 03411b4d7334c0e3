#include "model/fixture_check.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include "checkpoint/model_config.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "model/bert.h"
#include "model/bertscore.h"
#include "model/generation.h"
#include "model/llama.h"

namespace kvrag {
namespace {

using json = nlohmann::json;

// A nested JSON array of numbers → tensor (shape from the nesting; must be rectangular).
torch::Tensor json_tensor(const json& j, const std::string& what,
                          torch::Dtype dtype = torch::kFloat64) {
  std::vector<int64_t> shape;
  const json* cur = &j;
  while (cur->is_array()) {
    shape.push_back(static_cast<int64_t>(cur->size()));
    if (cur->empty()) break;
    cur = &(*cur)[0];
  }
  std::vector<double> flat;
  std::function<void(const json&, size_t)> walk = [&](const json& node, size_t depth) {
    if (depth == shape.size()) {
      KVRAG_CHECK(node.is_number(), "expected.json: {} holds a non-number", what);
      flat.push_back(node.get<double>());
      return;
    }
    KVRAG_CHECK(node.is_array() && static_cast<int64_t>(node.size()) == shape[depth],
                "expected.json: {} is not a rectangular array", what);
    for (const auto& child : node) walk(child, depth + 1);
  };
  walk(j, 0);
  return torch::tensor(flat, torch::kFloat64).view(shape).to(dtype);
}

double max_abs(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.numel() == 0) return 0.0;
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

struct Tolerance {
  double abs;
  bool bf16;  // bf16 or int8: relative to each output's magnitude, and greedy tokens not required
  double relative = kBf16RelativeTolerance;
  // The bound for one output whose expected values are `expected`.
  double for_output(const torch::Tensor& expected) const {
    if (!bf16 || expected.numel() == 0) return abs;
    return std::max(abs, relative * expected.abs().max().item<double>());
  }
};

CheckLine value_line(const std::string& name, const torch::Tensor& got,
                     const torch::Tensor& expected, const Tolerance& tol) {
  KVRAG_CHECK(got.sizes() == expected.sizes(), "{}: computed shape {} but expected.json has {}",
              name, c10::str(got.sizes()), c10::str(expected.sizes()));
  CheckLine line;
  line.name = name;
  line.max_abs_error = max_abs(got, expected);
  line.tolerance = tol.for_output(expected);
  line.ok = line.max_abs_error <= line.tolerance;
  return line;
}

CheckLine token_line(const std::string& name, const std::vector<Generation>& got,
                     const torch::Tensor& expected, bool required) {
  CheckLine line;
  line.name = name;
  int64_t differing = 0, total = 0;
  std::string first;
  for (int64_t b = 0; b < expected.size(0); ++b) {
    for (int64_t t = 0; t < expected.size(1); ++t) {
      ++total;
      const int64_t want = expected[b][t].item<int64_t>();
      const bool have = t < static_cast<int64_t>(got[b].tokens.size());
      if (!have || got[b].tokens[t] != want) {
        if (differing++ == 0) first = fmt::format(", first difference at row {} step {}", b, t);
      }
    }
  }
  line.max_abs_error = static_cast<double>(differing);
  line.ok = differing == 0 || !required;
  line.note = fmt::format("{} of {} tokens differ{}{}", differing, total, first,
                          required ? "" : " (reported, not required below fp32)");
  return line;
}

void check_llama(const std::string& dir, const json& e, torch::Dtype dtype, const Tolerance& tol,
                 FixtureReport& report) {
  auto model = load_llama(dir, dtype);
  const auto& c = model->config();
  torch::NoGradGuard no_grad;

  KVPrefix prefix;
  if (e.contains("prefix")) {
    const auto p = json_tensor(e["prefix"], "prefix", torch::kFloat32);  // [L, 2, B, kvH, P, hd]
    KVRAG_CHECK(p.dim() == 6 && p.size(0) == c.num_hidden_layers && p.size(1) == 2,
                "expected.json: prefix has shape {}, expected [L={}, 2, B, kvH, P, hd]",
                c10::str(p.sizes()), c.num_hidden_layers);
    for (int64_t l = 0; l < p.size(0); ++l) {
      prefix.keys.push_back(p[l][0].contiguous());
      prefix.values.push_back(p[l][1].contiguous());
    }
  }
  if (e.contains("input_ids")) {
    const auto ids = json_tensor(e["input_ids"], "input_ids", torch::kInt64);
    if (e.contains("logits")) {
      report.lines.push_back(
          value_line("logits", model->forward(ids), json_tensor(e["logits"], "logits"), tol));
    }
    if (e.contains("logits_with_prefix") && !prefix.empty()) {
      LlamaForwardArgs args;
      args.prefix = &prefix;
      report.lines.push_back(value_line("logits_with_prefix", model->forward(ids, args),
                                        json_tensor(e["logits_with_prefix"], "logits_with_prefix"),
                                        tol));
    }
  }
  if (e.contains("greedy")) {
    const auto& g = e["greedy"];
    const auto prompt = json_tensor(g.at("prompt_ids"), "greedy.prompt_ids", torch::kInt64);
    std::vector<std::vector<int64_t>> prompts;
    for (int64_t b = 0; b < prompt.size(0); ++b) {
      prompts.emplace_back(prompt[b].data_ptr<int64_t>(),
                           prompt[b].data_ptr<int64_t>() + prompt.size(1));
    }
    GenerationOptions options;
    options.max_new_tokens = g.at("new_tokens").get<int>();
    options.stop_at_eos = false;  // the fixture decodes a fixed number of tokens
    const bool required = !tol.bf16;
    if (g.contains("output_ids")) {
      report.lines.push_back(
          token_line("greedy.output_ids", generate(*model, prompts, options),
                     json_tensor(g["output_ids"], "greedy.output_ids", torch::kInt64), required));
    }
    if (g.contains("output_ids_with_prefix") && !prefix.empty()) {
      report.lines.push_back(token_line(
          "greedy.output_ids_with_prefix", generate(*model, prompts, options, &prefix),
          json_tensor(g["output_ids_with_prefix"], "greedy.output_ids_with_prefix", torch::kInt64),
          required));
    }
  }
}

void check_bert(const std::string& dir, const json& e, torch::Dtype dtype, const Tolerance& tol,
                FixtureReport& report) {
  auto model = load_bert(dir, dtype);
  torch::NoGradGuard no_grad;
  const auto ids = json_tensor(e.at("input_ids"), "input_ids", torch::kInt64);
  const auto mask = e.contains("attention_mask")
                        ? json_tensor(e["attention_mask"], "attention_mask", torch::kInt64)
                        : torch::ones_like(ids);
  const auto types = e.contains("token_type_ids")
                         ? json_tensor(e["token_type_ids"], "token_type_ids", torch::kInt64)
                         : torch::zeros_like(ids);
  const auto out = model->forward(ids, mask, types, /*output_hidden_states=*/true);
  const auto last = out.last_hidden_state.to(torch::kFloat32);  // [B, T, H]
  const auto lengths = mask.sum(1);

  if (e.contains("last_hidden_state")) {
    // Ragged: row b lists only its n_b unpadded positions.
    const auto& rows = e["last_hidden_state"];
    KVRAG_CHECK(rows.is_array() && static_cast<int64_t>(rows.size()) == ids.size(0),
                "expected.json: last_hidden_state must have one entry per row");
    std::vector<torch::Tensor> got, want;
    for (int64_t b = 0; b < ids.size(0); ++b) {
      const int64_t n = lengths[b].item<int64_t>();
      got.push_back(last[b].narrow(0, 0, n));
      want.push_back(json_tensor(rows[b], "last_hidden_state row"));
    }
    report.lines.push_back(value_line("last_hidden_state", torch::cat(got), torch::cat(want), tol));
  }
  if (e.contains("mean_pooled")) {
    report.lines.push_back(value_line("mean_pooled", mean_pool(last, mask),
                                      json_tensor(e["mean_pooled"], "mean_pooled"), tol));
  }
  if (e.contains("pooler_output") && model->has_pooler()) {
    report.lines.push_back(value_line("pooler_output",
                                      model->pool(out.last_hidden_state).to(torch::kFloat32),
                                      json_tensor(e["pooler_output"], "pooler_output"), tol));
  }
  if (e.contains("bertscore")) {
    int i = 0;
    for (const auto& cs : e["bertscore"].at("cases")) {
      const int64_t cand = cs.at("candidate_row").get<int64_t>(),
                    ref = cs.at("reference_row").get<int64_t>();
      const int64_t layer = cs.at("layer").get<int64_t>();
      KVRAG_CHECK(layer >= 0 && layer < static_cast<int64_t>(out.hidden_states.size()),
                  "expected.json: bertscore layer {} out of range", layer);
      const auto& h = out.hidden_states[layer];
      auto tokens = [&](int64_t row) {  // unpadded, without the first and last ([CLS]/[SEP])
        const int64_t n = lengths[row].item<int64_t>();
        return h[row].narrow(0, 1, std::max<int64_t>(n - 2, 0));
      };
      const auto s = bertscore(tokens(cand), tokens(ref));
      const auto got = torch::tensor({s.precision, s.recall, s.f1}, torch::kFloat64);
      const auto want = torch::tensor({cs.at("precision").get<double>(),
                                       cs.at("recall").get<double>(), cs.at("f1").get<double>()},
                                      torch::kFloat64);
      auto line =
          value_line(fmt::format("bertscore[{}] (rows {}→{}, layer {})", i++, cand, ref, layer),
                     got, want, tol);
      report.lines.push_back(line);
    }
  }
}

}  // namespace

bool FixtureReport::ok() const {
  if (lines.empty()) return false;
  for (const auto& l : lines) {
    if (!l.ok) return false;
  }
  return true;
}

FixtureReport check_fixture(const std::string& dir, const std::string& expected_path,
                            const std::string& dtype_name) {
  const torch::Dtype dtype = parse_model_dtype(dtype_name);
  const std::string path = expected_path.empty() ? dir + "/expected.json" : expected_path;
  json e;
  try {
    e = json::parse(read_file(path));
  } catch (const json::exception& ex) {
    fail("{}: invalid JSON: {}", path, ex.what());
  }
  KVRAG_CHECK(e.is_object(), "{}: expected a JSON object", path);
  FixtureReport report;
  report.model_type = read_model_type(dir);
  report.dtype = dtype_name;
  Tolerance tol{1e-4, dtype_name != "fp32"};
  if (e.contains("tolerance") && e["tolerance"].contains("abs"))
    tol.abs = e["tolerance"]["abs"].get<double>();
  try {
    if (report.model_type == "llama") {
      check_llama(dir, e, dtype, tol, report);
    } else if (report.model_type == "bert") {
      // BERT's int8 GEMMs round x to 7-bit codes per row where the CPU lacks VNNI.
      if (dtype == torch::kInt8 && q8_row_codes_in_use(Q8ManyRows::kRowCodes)) {
        tol.relative = kInt8RowCodesRelativeTolerance;
      }
      check_bert(dir, e, dtype, tol, report);
    } else {
      fail("{}/config.json: model_type '{}' is not supported (llama, bert)", dir,
           report.model_type);
    }
  } catch (const json::exception& ex) {
    fail("{}: {}", path, ex.what());
  }
  return report;
}

}  // namespace kvrag
