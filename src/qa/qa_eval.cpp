// QA evaluation over a questions file in several modes (see qa_eval.h).
#include "qa/qa_eval.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>

#include "checkpoint/model_folder.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/qa_metrics.h"
#include "model/bert.h"
#include "model/bertscore.h"
#include "text/tokenizer.h"

namespace kvrag {
namespace {

using json = nlohmann::json;

// The p-th percentile of `v` by nearest rank; null for none.
json percentile(std::vector<double> v, double p) {
  if (v.empty()) return nullptr;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

// BERTScore F1 of predictions against references with one BERT checkpoint and layer. Token
// states are cached by text (gold answers repeat across modes).
class BertScorer {
 public:
  BertScorer(const std::string& dir, int layer) : dir_(dir) {
    KVRAG_CHECK(std::filesystem::is_directory(dir), "BERTScore model folder {} does not exist",
                dir);
    check_model_folder(dir, {ModelFolder::kBert}, "--bertscore-model");
    model_ = load_bert(dir, torch::kFloat32);
    model_->eval();
    try {
      tokenizer_ = load_tokenizer(dir);
    } catch (Error& e) {
      throw e.with_context("BERTScore model " + dir);
    }
    const int64_t L = model_->config().num_hidden_layers;
    layer_ = layer < 0 ? L : layer;
    KVRAG_CHECK(layer_ >= 0 && layer_ <= L,
                "BERTScore model {}: layer {} out of range 0..{} (0 = embeddings)", dir, layer, L);
  }

  // Best F1 over the references; 0 for an empty prediction.
  double f1(const std::string& prediction, const std::vector<std::string>& references) {
    const auto& cand = states(prediction);
    double best = 0;
    for (const auto& r : references) best = std::max(best, bertscore(cand, states(r)).f1);
    return best;
  }

 private:
  // [n, H] states of the text's tokens without [CLS]/[SEP] on the chosen layer.
  const torch::Tensor& states(const std::string& text) {
    auto it = cache_.find(text);
    if (it != cache_.end()) return it->second;
    torch::NoGradGuard no_grad;
    auto ids = tokenizer_->encode(text, true);
    const auto max_len = static_cast<size_t>(model_->config().max_position_embeddings);
    if (ids.size() > max_len) {
      const TokenId last = ids.back();
      ids.resize(max_len);
      ids.back() = last;
    }
    const auto n = static_cast<int64_t>(ids.size());
    // [1, n]
    const auto id_tensor = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
    const auto mask = torch::ones({1, n}, torch::kInt64);
    const auto out = model_->forward(id_tensor, mask, {}, true);
    // [n-2, H]
    auto h =
        out.hidden_states[layer_][0].narrow(0, 1, std::max<int64_t>(n - 2, 0)).to(torch::kFloat32);
    return cache_.emplace(text, h).first->second;
  }

  std::string dir_;
  BertModel model_{nullptr};
  std::unique_ptr<Tokenizer> tokenizer_;
  int layer_ = 0;
  std::map<std::string, torch::Tensor> cache_;
};

struct Totals {
  int64_t n = 0;
  double em = 0, f1 = 0, contained = 0, token_accuracy = 0, bertscore = 0;
  // Answers with citations and a gold passage, split by exact match: how many, and how many of
  // them cite the gold passage's segment most.
  int64_t cited[2] = {0, 0}, cited_gold[2] = {0, 0};  // [wrong, correct]
};

std::string fraction(const json& v) {
  return v.is_number() ? fmt::format("{:.3f}", v.get<double>()) : "–";
}

}  // namespace

std::string qa_markdown(const json& summary, const std::vector<std::string>& modes) {
  std::string out = "| metric |";
  std::string rule = "|---|";
  for (const auto& m : modes) {
    out += " " + m + " |";
    rule += "---:|";
  }
  out += "\n" + rule + "\n";
  const std::vector<std::pair<const char*, const char*>> rows = {
      {"n", "questions"},
      {"em", "exact match"},
      {"f1", "token F1"},
      {"contained", "answer contained"},
      {"token_accuracy", "answer-token accuracy (teacher-forced)"},
      {"bertscore_f1", "BERTScore F1"}};
  for (const auto& [key, label] : rows) {
    out += fmt::format("| {} |", label);
    for (const auto& m : modes) {
      const json& v = summary.contains(m) ? summary[m].value(key, json()) : json();
      out += " " +
             (std::string(key) == "n" && v.is_number() ? std::to_string(v.get<int64_t>())
                                                       : fraction(v)) +
             " |";
    }
    out += "\n";
  }
  if (summary.contains("retrieval") && summary["retrieval"].is_object()) {
    out += "\nretrieval, answer in top-k:";
    std::vector<std::pair<int, std::string>> ks;  // numeric order, not the JSON keys' string order
    for (const auto& [k, v] : summary["retrieval"]["answer_in_top"].items())
      ks.emplace_back(std::stoi(k), fraction(v));
    std::sort(ks.begin(), ks.end());
    for (const auto& [k, v] : ks) out += fmt::format(" top-{} {}", k, v);
    out += "\n";
  }
  return out;
}

QaEvalReport evaluate_qa(const Answerer& answerer, const std::vector<Question>& all_questions,
                         const QaEvalOptions& options) {
  KVRAG_CHECK(!options.modes.empty(), "no modes to evaluate");
  KVRAG_CHECK(options.batch >= 1, "batch must be at least 1, not {}", options.batch);
  std::vector<Question> questions = all_questions;
  if (options.limit > 0 && static_cast<int64_t>(questions.size()) > options.limit)
    questions.resize(options.limit);
  KVRAG_CHECK(!questions.empty() || options.allow_empty,
              "no questions to evaluate; pass --allow-empty to accept");
  for (size_t i = 0; i < questions.size(); ++i) {
    KVRAG_CHECK(!questions[i].answers.empty(), "question {} (\"{}\") has no gold answers", i + 1,
                questions[i].question);
  }

  std::unique_ptr<BertScorer> scorer;
  if (!options.bertscore_model.empty())
    scorer = std::make_unique<BertScorer>(options.bertscore_model, options.bertscore_layer);

  ProgressOptions po;
  po.label = "eval";
  po.unit = "answers";
  po.total_items = static_cast<int64_t>(questions.size() * options.modes.size());
  po.enabled = options.progress;
  ProgressReporter progress(po);

  json summary = json::object();
  std::string predictions;
  std::vector<std::string> mode_names;
  int64_t done = 0;
  for (AnswerMode mode : options.modes) {
    const std::string name = to_string(mode);
    mode_names.push_back(name);
    Totals t;
    std::vector<double> ttft;  // per batch: its questions share the time to their first tokens
    for (size_t b0 = 0; b0 < questions.size(); b0 += options.batch) {
      const size_t b1 = std::min(questions.size(), b0 + options.batch);
      std::vector<std::string> qs, refs;
      for (size_t i = b0; i < b1; ++i) {
        qs.push_back(questions[i].question);
        refs.push_back(questions[i].answers.front());
      }
      std::vector<Answerer::ForcedScore> forced;
      std::vector<Answer> answers;
      try {
        answers = answerer.answer_and_score(qs, refs, mode, options.top_k, false, &forced);
      } catch (Error& e) {
        throw e.with_context(fmt::format("mode {}, questions {}..{}", name, b0 + 1, b1));
      }
      ttft.push_back(answers.front().ttft_ms);
      for (size_t i = b0; i < b1; ++i) {
        const Answer& a = answers[i - b0];
        const auto s = score_answer(a.text, questions[i].answers);
        json bs = nullptr;
        if (scorer) {
          const double f = scorer->f1(a.text, questions[i].answers);
          t.bertscore += f;
          bs = f;
        }
        ++t.n;
        t.em += s.em;
        t.f1 += s.f1;
        t.contained += s.contained;
        t.token_accuracy += forced[i - b0].token_accuracy;
        json cited = nullptr;
        if (!a.citations.empty()) {
          const size_t top =
              std::max_element(a.citations.begin(), a.citations.end()) - a.citations.begin();
          cited = top;
          if (!questions[i].gold_passage_id.empty()) {
            const int correct = s.em > 0.5 ? 1 : 0;
            ++t.cited[correct];
            t.cited_gold[correct] += a.evidence[top].doc_id == questions[i].gold_passage_id;
          }
        }
        if (!options.predictions_path.empty()) {
          auto ev = json::array();
          for (const auto& e : a.evidence) ev.push_back(e.segment_id);
          json line{{"question", questions[i].question},
                    {"answers", questions[i].answers},
                    {"mode", name},
                    {"prediction", a.text},
                    {"em", s.em},
                    {"f1", s.f1},
                    {"contained", s.contained},
                    {"token_accuracy", forced[i - b0].token_accuracy},
                    {"answer_logprob", forced[i - b0].logprob},
                    {"bertscore_f1", bs},
                    {"evidence", ev}};
          if (!cited.is_null()) {
            line["attention"] = a.citations;
            line["cited"] = cited;
          }
          predictions += line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
        }
      }
      done += static_cast<int64_t>(b1 - b0);
      progress.set_note(fmt::format("mode {}  EM {:.3f}", name, t.em / t.n));
      progress.update(0, done);
    }
    // Means; null without questions (allow_empty) or without a BERTScore model.
    const auto mean = [&](double sum, bool has = true) {
      return has && t.n > 0 ? json(sum / static_cast<double>(t.n)) : json(nullptr);
    };
    summary[name] = {
        {"n", t.n},
        {"em", mean(t.em)},
        {"f1", mean(t.f1)},
        {"contained", mean(t.contained)},
        {"token_accuracy", mean(t.token_accuracy)},
        {"bertscore_f1", mean(t.bertscore, scorer != nullptr)},
        {"ttft_ms",
         {{"p50", percentile(ttft, 50)}, {"p95", percentile(ttft, 95)}, {"batch", options.batch}}}};
    if (t.cited[0] + t.cited[1] > 0) {
      const auto share = [&](int correct) {
        return t.cited[correct] > 0 ? json(static_cast<double>(t.cited_gold[correct]) /
                                           static_cast<double>(t.cited[correct]))
                                    : json(nullptr);
      };
      summary[name]["most_cited_is_gold"] = {{"correct", share(1)},
                                             {"wrong", share(0)},
                                             {"n_correct", t.cited[1]},
                                             {"n_wrong", t.cited[0]}};
    }
  }
  progress.finish(0, done);

  if (answerer.has_index()) {
    const auto report = answerer.evaluate_retrieval(questions, options.retrieval_ks);
    json top = json::object();
    for (const auto& [k, v] : report.answer_in_top) top[std::to_string(k)] = v;
    summary["retrieval"] = {{"answer_in_top", top}};
  } else {
    summary["retrieval"] = nullptr;
  }
  if (!options.predictions_path.empty()) write_file_atomic(options.predictions_path, predictions);
  return {summary, qa_markdown(summary, mode_names)};
}

QaEvalReport evaluate_qa(const Answerer& answerer, const std::string& questions_path,
                         const QaEvalOptions& options) {
  return evaluate_qa(answerer, read_questions(questions_path, options.allow_empty), options);
}

}  // namespace kvrag
