#include "qa/fairness_eval.h"

#include <algorithm>
#include <map>
#include <set>

#include <fmt/format.h>
#include <torch/torch.h>

#include "core/error.h"
#include "core/progress.h"
#include "eval/answer_match.h"
#include "eval/qa_metrics.h"
#include "index/retrieval_eval.h"
#include "prefix/fairness_terms.h"
#include "prefix/prefix_pipeline.h"
#include "text/corpus_reader.h"

namespace kvrag {

double linear_probe_accuracy(const std::vector<std::vector<float>>& features,
                             const std::vector<int>& labels, const std::vector<char>& train) {
  KVRAG_CHECK(
      !features.empty() && features.size() == labels.size() && labels.size() == train.size(),
      "linear probe: {} feature rows, {} labels, {} train flags", features.size(), labels.size(),
      train.size());
  const int64_t n = static_cast<int64_t>(features.size());
  const int64_t f = static_cast<int64_t>(features[0].size());
  auto x = torch::empty({n, f}, torch::kFloat32);  // [N, F]
  for (int64_t i = 0; i < n; ++i) {
    KVRAG_CHECK(static_cast<int64_t>(features[i].size()) == f,
                "linear probe: row {} has {} features, row 0 has {}", i, features[i].size(), f);
    std::copy(features[i].begin(), features[i].end(), x[i].data_ptr<float>());
  }
  std::vector<int64_t> tr, te;
  for (int64_t i = 0; i < n; ++i) (train[i] ? tr : te).push_back(i);
  KVRAG_CHECK(!tr.empty() && !te.empty(), "linear probe: needs rows to train and to test on");
  const auto y = torch::tensor(std::vector<float>(labels.begin(), labels.end()));  // [N]
  const auto tr_idx = torch::tensor(tr), te_idx = torch::tensor(te);
  const auto x_tr = x.index_select(0, tr_idx);
  const auto mean = x_tr.mean(0, true), std = x_tr.std(0, true, true) + 1e-6;
  const auto z_tr = (x_tr - mean) / std, z_te = (x.index_select(0, te_idx) - mean) / std;
  const auto y_tr = y.index_select(0, tr_idx), y_te = y.index_select(0, te_idx);

  torch::manual_seed(0);
  auto w = torch::zeros({f}, torch::requires_grad());
  auto b = torch::zeros({}, torch::requires_grad());
  torch::optim::LBFGS lbfgs({w, b}, torch::optim::LBFGSOptions(1.0).max_iter(200));
  constexpr double kL2 = 1e-2;  // per feature, on standardised inputs
  auto closure = [&] {
    lbfgs.zero_grad();
    auto loss =
        torch::binary_cross_entropy_with_logits(torch::mv(z_tr, w) + b, y_tr) + kL2 * (w * w).sum();
    loss.backward();
    return loss;
  };
  lbfgs.step(closure);
  torch::NoGradGuard no_grad;
  const auto predicted = ((torch::mv(z_te, w) + b) > 0).to(torch::kFloat32);
  return (predicted == y_te).to(torch::kFloat32).mean().item<double>();
}

namespace {

struct Tally {
  int64_t n = 0;
  double em = 0;
  void add(double e) {
    ++n;
    em += e;
  }
  nlohmann::json json() const {
    return {{"n", n}, {"em", n > 0 ? nlohmann::json(em / static_cast<double>(n)) : nullptr}};
  }
  double rate() const { return n > 0 ? em / static_cast<double>(n) : 0.0; }
};

// Greedy answers to every example, in batches; *features (optional) gets each row's prefix
// features (prefix/fairness_terms.h).
// closed_book[i]: example i's bare question prompt (the contrast, o.contrast); sources[i]: its
// passage's tokens (only with o.extractive).
std::vector<std::string> answer_all(PrefixPipeline& pipeline,
                                    const std::vector<PrefixExample>& examples,
                                    const std::vector<std::vector<int64_t>>& closed_book,
                                    const std::vector<std::vector<int64_t>>& sources,
                                    const FairnessEvalOptions& o, const std::string& label,
                                    std::vector<std::vector<float>>* features) {
  std::vector<std::string> answers(examples.size());
  if (features != nullptr) features->assign(examples.size(), {});
  ProgressOptions po;
  po.label = label;
  po.unit = "answers";
  po.total_items = static_cast<int64_t>(examples.size());
  po.enabled = o.progress;
  ProgressReporter progress(po);
  torch::NoGradGuard no_grad;
  for (int64_t begin = 0; begin < static_cast<int64_t>(examples.size()); begin += o.batch) {
    const int64_t end = std::min<int64_t>(examples.size(), begin + o.batch);
    std::vector<int64_t> rows;
    for (int64_t r = begin; r < end; ++r) rows.push_back(r);
    const auto batch = pipeline.batch(examples, rows);
    const auto prefix = pipeline.prefix(batch);
    const std::vector<std::vector<int64_t>> plain(closed_book.begin() + begin,
                                                  closed_book.begin() + end);
    PrefixDecoding decoding;
    decoding.contrast = o.contrast;
    decoding.closed_book = &plain;
    if (o.extractive) decoding.copy_from.assign(sources.begin() + begin, sources.begin() + end);
    const auto texts = pipeline.generate(batch, prefix, o.max_new_tokens, nullptr, decoding);
    for (int64_t r = begin; r < end; ++r) answers[r] = texts[r - begin];
    if (features != nullptr) {
      const auto f = prefix_features(prefix).contiguous();  // [B, F]
      for (int64_t r = begin; r < end; ++r) {
        const float* p = f[r - begin].data_ptr<float>();
        (*features)[r].assign(p, p + f.size(1));
      }
    }
    progress.update(0, end);
  }
  progress.finish(0, static_cast<int64_t>(examples.size()));
  return answers;
}

// EM overall, per group and per kind, and the flip rate, of answers to the gold passages (rows
// gold_row) and to the twins (twin_row, -1: none).
nlohmann::json summarise(const std::vector<Question>& questions,
                         const std::vector<std::string>& answers,
                         const std::vector<int64_t>& gold_row,
                         const std::vector<int64_t>& twin_row) {
  Tally all, stereo, anti;
  std::map<std::string, Tally> groups;
  int64_t twins = 0, flips = 0;
  for (size_t i = 0; i < questions.size(); ++i) {
    const auto& q = questions[i];
    const double em = exact_match(answers[gold_row[i]], q.answers);
    all.add(em);
    groups[q.group].add(em);
    if (q.stereotypical == 1) stereo.add(em);
    if (q.stereotypical == 0) anti.add(em);
    if (twin_row[i] < 0) continue;
    ++twins;
    flips += normalize_answer(answers[gold_row[i]]) != normalize_answer(answers[twin_row[i]]);
  }
  nlohmann::json by_group = nlohmann::json::object();
  double lo = 1, hi = 0;
  for (const auto& [name, t] : groups) {
    by_group[name] = t.json();
    lo = std::min(lo, t.rate());
    hi = std::max(hi, t.rate());
  }
  return {
      {"n", all.n},
      {"em", all.rate()},
      {"groups", by_group},
      {"group_gap", hi - lo},
      {"stereotypical", stereo.json()},
      {"anti_stereotypical", anti.json()},
      {"stereotype_gap", stereo.n > 0 && anti.n > 0 ? nlohmann::json(stereo.rate() - anti.rate())
                                                    : nlohmann::json(nullptr)},
      {"flip_rate", twins > 0
                        ? nlohmann::json(static_cast<double>(flips) / static_cast<double>(twins))
                        : nlohmann::json(nullptr)}};
}

}  // namespace

nlohmann::json evaluate_fairness(PrefixPipeline& pipeline, const FairnessEvalOptions& o) {
  KVRAG_CHECK(pipeline.has_encoder(), "fairness evaluation needs a knowledge encoder");
  KVRAG_CHECK(o.batch >= 1 && o.max_new_tokens >= 1,
              "fairness evaluation: batch and max_new_tokens must be positive");
  const auto questions = read_questions(o.questions);
  std::set<std::string> wanted;
  for (size_t i = 0; i < questions.size(); ++i) {
    const auto& q = questions[i];
    KVRAG_CHECK(!q.gold_passage_id.empty() && !q.group.empty() && !q.answers.empty(),
                "{}: question {}: a fairness question needs \"answers\", \"gold_passage_id\" and "
                "\"group\"",
                o.questions, i + 1);
    wanted.insert(q.gold_passage_id);
    if (!q.twin_passage_id.empty()) wanted.insert(q.twin_passage_id);
  }
  std::map<std::string, PromptPassage> found;
  CorpusReader reader(o.passages, CorpusFormat::kAuto, /*strict=*/false, /*allow_empty=*/true);
  for (Document doc; found.size() < wanted.size() && reader.next(doc);) {
    if (wanted.count(doc.id) > 0) found[doc.id] = {doc.title, doc.text};
  }
  const auto passage = [&](const std::string& id, size_t i) {
    const auto it = found.find(id);
    KVRAG_CHECK(it != found.end(), "{}: question {}: passage {} is not in {}", o.questions, i + 1,
                id, o.passages);
    return it->second;
  };

  // Two examples per question with a twin (gold, twin), one without; answered in batches, in
  // prefix mode (the passage through the encoder) and in context mode (the passage in the prompt).
  std::vector<PrefixExample> prefixed, in_context;
  std::vector<std::vector<int64_t>> closed_book, sources;  // per row of both
  std::vector<int64_t> gold_row(questions.size()), twin_row(questions.size(), -1);
  const int64_t budget = pipeline.max_positions() - o.max_new_tokens - 1;
  for (size_t i = 0; i < questions.size(); ++i) {
    const auto& q = questions[i];
    const std::string where = fmt::format("{}: question {}", o.questions, i + 1);
    gold_row[i] = static_cast<int64_t>(prefixed.size());
    for (const auto* id : {&q.gold_passage_id, &q.twin_passage_id}) {
      if (id->empty()) continue;
      if (id == &q.twin_passage_id) twin_row[i] = static_cast<int64_t>(prefixed.size());
      const PromptPassage p = passage(*id, i);
      prefixed.push_back(pipeline.example(q.question, q.answers[0], {p},
                                          id == &q.gold_passage_id ? where : where + " (twin)"));
      in_context.push_back({pipeline.fit_prompt(q.question, {p}, budget, i), {}, {}});
      closed_book.push_back(pipeline.prompt_ids(q.question));
      if (o.extractive) sources.push_back(pipeline.extractive_source({p}));
    }
  }
  std::vector<std::vector<float>> features;
  const auto prefix_answers =
      answer_all(pipeline, prefixed, closed_book, sources, o, "fairness, prefix", &features);
  const auto context_answers =
      answer_all(pipeline, in_context, closed_book, sources, o, "fairness, context", nullptr);

  auto summary = summarise(questions, prefix_answers, gold_row, twin_row);
  std::vector<std::vector<float>> probe_x;
  std::vector<int> probe_y;
  std::vector<char> probe_train;
  const std::string first_group = [&] {
    std::set<std::string> g;
    for (const auto& q : questions) g.insert(q.group);
    return *g.begin();
  }();
  for (size_t i = 0; i < questions.size(); ++i) {
    if (twin_row[i] < 0) continue;
    const int label = questions[i].group == first_group ? 0 : 1;
    for (const auto& [row, y] :
         {std::pair{gold_row[i], label}, std::pair{twin_row[i], 1 - label}}) {
      probe_x.push_back(features[row]);
      probe_y.push_back(y);
      probe_train.push_back(i % 2 == 0);
    }
  }
  nlohmann::json leakage = nullptr;
  const int64_t probe_train_rows = std::count(probe_train.begin(), probe_train.end(), 1);
  if (probe_train_rows > 0 && probe_train_rows < static_cast<int64_t>(probe_train.size())) {
    leakage = {{"probe_accuracy", linear_probe_accuracy(probe_x, probe_y, probe_train)},
               {"majority_rate", 0.5},
               {"train", probe_train_rows},
               {"test", static_cast<int64_t>(probe_train.size()) - probe_train_rows}};
  }
  summary["leakage"] = leakage;
  summary["context"] = summarise(questions, context_answers, gold_row, twin_row);
  return summary;
}

std::string fairness_markdown(const nlohmann::json& s) {
  const auto value = [](const nlohmann::json& v) {
    return v.is_number() ? fmt::format("{:.3f}", v.get<double>()) : std::string("–");
  };
  // A column per mode: prefix (the summary itself) and context where measured.
  std::vector<const nlohmann::json*> cols = {&s};
  if (s.contains("context")) cols.push_back(&s.at("context"));
  const auto row = [&](const std::string& name, const auto& get) {
    std::string line = "| " + name + " |";
    for (const auto* c : cols) line += " " + get(*c) + " |";
    return line + "\n";
  };
  const auto count = [](const nlohmann::json& t) { return t.at("n").get<int64_t>(); };
  std::string out = cols.size() > 1 ? "| fairness | prefix | context |\n|---|---:|---:|\n"
                                    : "| fairness | prefix |\n|---|---:|\n";
  out +=
      row(fmt::format("EM (n = {})", count(s)), [&](const auto& c) { return value(c.at("em")); });
  for (const auto& [group, t] : s.at("groups").items()) {
    out += row(fmt::format("EM {} (n = {})", group, count(t)),
               [&](const auto& c) { return value(c.at("groups").at(group).at("em")); });
  }
  out += row("group gap", [&](const auto& c) { return value(c.at("group_gap")); });
  for (const auto* kind : {"stereotypical", "anti_stereotypical"}) {
    std::string name = kind;
    std::replace(name.begin(), name.end(), '_', '-');
    out += row(fmt::format("EM {} (n = {})", name, count(s.at(kind))),
               [&](const auto& c) { return value(c.at(kind).at("em")); });
  }
  out += row("stereotype gap", [&](const auto& c) { return value(c.at("stereotype_gap")); });
  out += row("counterfactual flip rate", [&](const auto& c) { return value(c.at("flip_rate")); });
  out += row("leakage: probe accuracy (majority 0.5)", [&](const auto& c) {
    const auto& leak = c.value("leakage", nlohmann::json(nullptr));
    return leak.is_null() ? std::string("–") : value(leak.at("probe_accuracy"));
  });
  return out;
}

}  // namespace kvrag
