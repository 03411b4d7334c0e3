// QA evaluation over a questions file in several modes (see qa_eval.h).
#include "qa/qa_eval.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>

#include "checkpoint/model_folder.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/flag_metrics.h"
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

// What each answer of a mode says about hallucination, for the "hallucination" block.
struct Signals {
  std::vector<double> score, gain, logprob_with, in_evidence;
  std::vector<bool> wrong, correct, supported;
  int64_t flagged = 0, caught = 0, with_flag = 0;  // answers flagged; of them wrong; with a flag
  int64_t answered = 0;                            // not abstained
  double em_answered = 0;

  void add(const Answer& a, bool is_correct) {
    const auto& g = a.groundedness;
    score.push_back(g.score());
    gain.push_back(g.gain());
    logprob_with.push_back(g.logprob_with);
    in_evidence.push_back(g.answer_in_evidence ? 1 : 0);
    supported.push_back(g.answer_in_evidence);
    wrong.push_back(!is_correct);
    correct.push_back(is_correct);
    if (a.flagged) {
      ++with_flag;
      flagged += *a.flagged;
      caught += *a.flagged && !is_correct;
    }
    if (!a.abstained) {
      ++answered;
      em_answered += is_correct;
    }
  }
};

json or_null(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

// The share of `flags` among the answers `in` selects; null where it selects none.
json share(const std::vector<bool>& flags, const std::vector<bool>& in, bool value) {
  int64_t n = 0, k = 0;
  for (size_t i = 0; i < flags.size(); ++i) {
    if (in[i] != value) continue;
    ++n;
    k += flags[i];
  }
  return n > 0 ? json(static_cast<double>(k) / static_cast<double>(n)) : json(nullptr);
}

// The mean of `v` over the answers `in` selects (all where `in` is null); null for none.
json mean_of(const std::vector<double>& v, const std::vector<bool>* in = nullptr,
             bool value = true) {
  double sum = 0;
  int64_t n = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (in != nullptr && (*in)[i] != value) continue;
    sum += v[i];
    ++n;
  }
  return n > 0 ? json(sum / static_cast<double>(n)) : json(nullptr);
}

json hallucination_block(const Signals& s, const std::map<AnswerMode, double>& thresholds) {
  std::vector<bool> unsupported;
  for (const bool x : s.supported) unsupported.push_back(!x);
  const std::vector<bool> all(s.wrong.size(), true);
  json j = {{"unsupported",
             {{"all", share(unsupported, all, true)},
              {"correct", share(unsupported, s.wrong, false)},
              {"wrong", share(unsupported, s.wrong, true)}}},
            {"n_correct", std::count(s.correct.begin(), s.correct.end(), true)},
            {"n_wrong", std::count(s.wrong.begin(), s.wrong.end(), true)},
            {"logprob_gain",
             {{"all", mean_of(s.gain)},
              {"correct", mean_of(s.gain, &s.wrong, false)},
              {"wrong", mean_of(s.gain, &s.wrong, true)}}},
            {"auroc_wrong",
             {{"score", or_null(auroc_of_low_scores(s.score, s.wrong))},
              {"logprob_gain", or_null(auroc_of_low_scores(s.gain, s.wrong))},
              {"logprob_with", or_null(auroc_of_low_scores(s.logprob_with, s.wrong))},
              {"answer_in_evidence", or_null(auroc_of_low_scores(s.in_evidence, s.wrong))}}},
            {"flag", nullptr}};
  if (s.with_flag > 0) {
    const auto n_wrong = std::count(s.wrong.begin(), s.wrong.end(), true);
    json t = json::object();
    for (const auto& [m, v] : thresholds)
      t[to_string(m)] = std::isfinite(v) ? json(v) : json(v > 0 ? "inf" : "-inf");
    j["flag"] = {
        {"thresholds", t},
        {"flagged", s.flagged},
        {"precision", s.flagged > 0
                          ? json(static_cast<double>(s.caught) / static_cast<double>(s.flagged))
                          : json(nullptr)},
        {"recall", n_wrong > 0 ? json(static_cast<double>(s.caught) / static_cast<double>(n_wrong))
                               : json(nullptr)}};
  }
  // Risk-coverage: answering only the best-scored, at most 20 points (every 5% of coverage).
  auto curve = json::array();
  int step = 1;
  for (const auto& p : risk_coverage(s.score, s.correct)) {
    if (p.coverage + 1e-12 < step / 20.0 && p.answered < static_cast<int64_t>(s.score.size()))
      continue;
    curve.push_back({{"threshold", p.threshold}, {"coverage", p.coverage}, {"em", p.accuracy}});
    while (step <= 20 && step / 20.0 <= p.coverage + 1e-12) ++step;
  }
  j["risk_coverage"] = curve;
  return j;
}

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
      {"/n", "questions"},
      {"/em", "exact match"},
      {"/f1", "token F1"},
      {"/contained", "answer contained"},
      {"/token_accuracy", "answer-token accuracy (teacher-forced)"},
      {"/bertscore_f1", "BERTScore F1"},
      {"/ttft_ms/mean", "mean TTFT (ms)"},
      {"/hallucination/unsupported/all", "answers not in the evidence"},
      {"/hallucination/auroc_wrong/score", "AUROC, groundedness score → wrong"},
      {"/hallucination/flag/precision", "flag precision (wrong answers)"},
      {"/hallucination/flag/recall", "flag recall (wrong answers)"},
      {"/abstention/coverage", "coverage (abstaining)"},
      {"/abstention/em_answered", "exact match of the answered"}};
  for (const auto& [key, label] : rows) {
    const json::json_pointer ptr(key);
    bool any = false;
    std::string row = fmt::format("| {} |", label);
    for (const auto& m : modes) {
      const json v = summary.contains(m) && summary[m].contains(ptr) ? summary[m][ptr] : json();
      any = any || !v.is_null();
      const std::string k = key;
      row += " " +
             (k == "/n" && v.is_number()              ? std::to_string(v.get<int64_t>())
              : k == "/ttft_ms/mean" && v.is_number() ? fmt::format("{:.0f}", v.get<double>())
                                                      : fraction(v)) +
             " |";
    }
    // rows of blocks no mode has (a flag without calibration, abstention) are left out
    if (any || (key[1] != 'h' && key[1] != 'a')) out += row + "\n";
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
    Signals signals;
    // per batch: the time to its questions' first tokens (the slowest's: in auto they differ)
    std::vector<double> ttft;
    double ttft_sum = 0;  // per question
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
        answers = answerer.answer_and_score(qs, refs, mode, options.top_k, true, &forced);
      } catch (Error& e) {
        throw e.with_context(fmt::format("mode {}, questions {}..{}", name, b0 + 1, b1));
      }
      double slowest = 0;
      for (const auto& a : answers) {
        slowest = std::max(slowest, a.ttft_ms);
        ttft_sum += a.ttft_ms;
      }
      ttft.push_back(slowest);
      for (size_t i = b0; i < b1; ++i) {
        const Answer& a = answers[i - b0];
        const auto s = score_answer(a.text, questions[i].answers);
        // Hallucination is measured on the answer the LLM gave, abstained or not.
        signals.add(a, exact_match(a.generated(), questions[i].answers) > 0.5);
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
                    {"evidence", ev},
                    {"answered_by", a.answered_by},
                    {"groundedness_score", a.groundedness.score()},
                    {"logprob_with", a.groundedness.logprob_with},
                    {"logprob_without", a.groundedness.logprob_without},
                    {"answer_in_evidence", a.groundedness.answer_in_evidence}};
          if (a.flagged) line["flagged"] = *a.flagged;
          if (a.abstained) line["withheld_answer"] = a.withheld;
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
         {{"p50", percentile(ttft, 50)},
          {"p95", percentile(ttft, 95)},
          {"mean", mean(ttft_sum)},
          {"batch", options.batch}}},
        {"hallucination", hallucination_block(signals, answerer.options().flag_below)}};
    if (answerer.options().abstain_below > -std::numeric_limits<double>::infinity()) {
      summary[name]["abstention"] = {
          {"threshold", answerer.options().abstain_below},
          {"answered", signals.answered},
          {"coverage", mean(static_cast<double>(signals.answered))},
          {"em_answered", signals.answered > 0
                              ? json(signals.em_answered / static_cast<double>(signals.answered))
                              : json(nullptr)}};
    }
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

namespace kvrag {

std::map<AnswerMode, FlagStats> calibrate_flags(const Answerer& answerer,
                                                const std::vector<Question>& questions,
                                                const QaEvalOptions& options) {
  KVRAG_CHECK(!questions.empty(), "no questions to calibrate on");
  std::vector<AnswerMode> modes;
  for (const AnswerMode m : options.modes) {
    for (const AnswerMode own :
         m == AnswerMode::kAuto ? std::vector<AnswerMode>{AnswerMode::kPrefix, AnswerMode::kContext}
                                : std::vector<AnswerMode>{m}) {
      if (std::find(modes.begin(), modes.end(), own) == modes.end()) modes.push_back(own);
    }
  }
  ProgressOptions po;
  po.label = "calibrate";
  po.unit = "answers";
  po.total_items = static_cast<int64_t>(questions.size() * modes.size());
  po.enabled = options.progress;
  ProgressReporter progress(po);
  std::map<AnswerMode, FlagStats> out;
  int64_t done = 0;
  for (const AnswerMode mode : modes) {
    std::vector<double> scores;
    std::vector<bool> wrong;
    for (size_t b0 = 0; b0 < questions.size(); b0 += options.batch) {
      const size_t b1 = std::min(questions.size(), b0 + options.batch);
      std::vector<std::string> qs;
      for (size_t i = b0; i < b1; ++i) qs.push_back(questions[i].question);
      std::vector<Answer> answers;
      try {
        answers = answerer.answer(qs, mode, options.top_k, true);
      } catch (Error& e) {
        throw e.with_context(
            fmt::format("calibrating mode {}, questions {}..{}", to_string(mode), b0 + 1, b1));
      }
      for (size_t i = b0; i < b1; ++i) {
        const Answer& a = answers[i - b0];
        scores.push_back(a.groundedness.score());
        wrong.push_back(exact_match(a.generated(), questions[i].answers) < 0.5);
      }
      done += static_cast<int64_t>(b1 - b0);
      progress.update(0, done);
    }
    out[mode] = calibrate_flag(scores, wrong);
  }
  progress.finish(0, done);
  return out;
}

}  // namespace kvrag
