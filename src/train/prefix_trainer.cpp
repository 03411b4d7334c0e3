#include "train/prefix_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <torch/torch.h>

#include "checkpoint/model_folder.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/splitmix64.h"
#include "eval/qa_metrics.h"
#include "index/index_retriever.h"
#include "index/retrieval_eval.h"
#include "model/knowledge_encoder.h"
#include "ops/threads.h"
#include "prefix/prefix_pipeline.h"
#include "text/corpus_reader.h"
#include "train/data_parallel.h"
#include "train/fairness_objective.h"
#include "train/rank_sync.h"
#include "train/train_state.h"

namespace kvrag {

namespace fs = std::filesystem;

int64_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    // "VmHWM:  1234 kB"
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

namespace {

using SegmentTexts = std::vector<PromptPassage>;  // (title, text) by rank

bool is_knowledge_encoder_dir(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!fs::exists(path)) return false;
  try {
    const auto j = nlohmann::json::parse(read_file(path));
    return j.is_object() && j.value("model_type", std::string()) == "kvrag_knowledge_encoder";
  } catch (const nlohmann::json::exception&) {
    return false;  // the loader that runs next names the problem
  }
}

// The gold passage of every question (oracle mode), read from `passages` in one pass.
std::vector<SegmentTexts> oracle_segments(const std::vector<std::vector<Question>*>& sets,
                                          const std::vector<std::string>& files,
                                          const std::string& passages) {
  std::set<std::string> wanted;
  for (size_t s = 0; s < sets.size(); ++s) {
    for (size_t i = 0; i < sets[s]->size(); ++i) {
      const auto& q = (*sets[s])[i];
      KVRAG_CHECK(!q.gold_passage_id.empty(),
                  "{}: question {}: no gold_passage_id (needed by --oracle)", files[s], i + 1);
      wanted.insert(q.gold_passage_id);
    }
  }
  std::map<std::string, PromptPassage> found;
  CorpusReader reader(passages, CorpusFormat::kAuto, /*strict=*/false, /*allow_empty=*/true);
  Document doc;
  while (found.size() < wanted.size() && reader.next(doc)) {
    if (wanted.count(doc.id)) found[doc.id] = {doc.title, doc.text};
  }
  std::vector<SegmentTexts> out;
  for (size_t s = 0; s < sets.size(); ++s) {
    for (size_t i = 0; i < sets[s]->size(); ++i) {
      const auto& id = (*sets[s])[i].gold_passage_id;
      const auto it = found.find(id);
      KVRAG_CHECK(it != found.end(), "{}: question {}: gold passage {} is not in {}", files[s],
                  i + 1, id, passages);
      out.push_back({it->second});
    }
  }
  return out;
}

// Oracle mode's distractors: after each question's gold passage, `n` passages drawn from `pool`
// (none with the gold's title, so never a twin of the same entity; a pool short of such passages
// gives fewer). Drawn once, from the seed and the question's place in its set (`stream` tells the
// sets apart), so a resumed run reads the same; each batch then reads some of them (read_view).
void add_distractors(std::vector<SegmentTexts>& segments, const std::vector<PromptPassage>& pool,
                     int n, uint64_t seed, uint64_t stream) {
  for (size_t i = 0; i < segments.size(); ++i) {
    SplitMix64 rng(splitmix64_mix(seed ^ splitmix64_mix(stream)) + i);
    const std::string title = segments[i].front().title;
    std::set<size_t> used;
    for (int tries = 0; static_cast<int>(used.size()) < n && tries < 16 * (n + 1); ++tries) {
      const size_t j = rng.next() % pool.size();
      if (pool[j].title != title && used.insert(j).second) segments[i].push_back(pool[j]);
    }
  }
}

// What one batch reads with distractors: each row's gold passage and the first c of its
// distractors, c uniform in [0, n] for the whole batch (batch rows need equal segment counts),
// the gold at a rank uniform in [0, c] drawn per row. c comes from (seed, stream, batch) and the
// rank from (seed, row), so every rank of a data-parallel run, and a resumed run, read the same;
// over the epochs every k from 1 to 1 + n is trained, the gold at every rank.
std::vector<PrefixExample> read_view(const std::vector<PrefixExample>& examples,
                                     const std::vector<int64_t>& rows, int n, uint64_t seed,
                                     uint64_t stream, int64_t batch) {
  SplitMix64 batch_rng(splitmix64_mix(seed ^ splitmix64_mix(stream)) + batch);
  auto c = static_cast<size_t>(batch_rng.next() % static_cast<uint64_t>(n + 1));
  for (const auto r : rows) c = std::min(c, examples[r].segments.size() - 1);
  std::vector<PrefixExample> view;
  for (const auto r : rows) {
    const auto& ex = examples[r];
    SplitMix64 row_rng(splitmix64_mix(seed ^ 0x5eedULL) + static_cast<uint64_t>(r));
    PrefixExample v{ex.prompt, ex.target, {ex.segments.begin() + 1, ex.segments.begin() + 1 + c}};
    const auto rank = static_cast<int64_t>(row_rng.next() % (c + 1));
    v.segments.insert(v.segments.begin() + rank, ex.segments.front());
    view.push_back(std::move(v));
  }
  return view;
}

// The top-k segments of every question from the index, best first.
std::vector<SegmentTexts> retrieved_segments(const std::vector<Question>& questions,
                                             const std::string& file, IndexRetriever& retriever,
                                             int k) {
  std::vector<SegmentTexts> out;
  constexpr size_t kChunk = 256;
  for (size_t begin = 0; begin < questions.size(); begin += kChunk) {
    const size_t end = std::min(questions.size(), begin + kChunk);
    std::vector<std::string> texts;
    for (size_t i = begin; i < end; ++i) texts.push_back(questions[i].question);
    const auto evidence = retriever.search(texts, k);
    for (size_t i = begin; i < end; ++i) {
      const auto& e = evidence[i - begin];
      KVRAG_CHECK(static_cast<int>(e.size()) == k,
                  "{}: question {}: the index returned {} segments, --top-k is {}", file, i + 1,
                  e.size(), k);
      SegmentTexts segments;
      for (const auto& seg : e) segments.push_back({seg.title, seg.text});
      out.push_back(std::move(segments));
    }
  }
  return out;
}

std::vector<int64_t> iota_rows(size_t n) {
  std::vector<int64_t> rows(n);
  for (size_t i = 0; i < n; ++i) rows[i] = static_cast<int64_t>(i);
  return rows;
}

struct Validation {
  double em = 0, loss = 0;
  // Reliance on the evidence: the answers' teacher-forced mean log-probability per token with
  // the prefix (-loss) and closed-book, and the share of answer tokens (EOS aside) whose argmax
  // with the prefix is a token of the question's segments.
  double logprob_with = 0, logprob_without = 0, argmax_in_evidence = 0;
};

// The fairness objective of a run (train/fairness_objective.h): attributes from the questions'
// groups, twin examples from their twin passages, answer-balancing weights from their answers.
FairnessObjective fairness_objective(const PrefixTrainOptions& o, PrefixPipeline& pipeline,
                                     const std::vector<Question>& questions,
                                     const std::vector<PrefixExample>& examples) {
  std::vector<float> row_weight;
  if (o.balance_answers > 0) {
    std::vector<std::string> answers;
    for (const auto& q : questions) answers.push_back(target_answer(q));
    row_weight = answer_balance_weights(answers, o.balance_answers);
  }
  if (o.fairness_weight <= 0)
    return FairnessObjective(0, o.fairness_loss, {}, {}, {}, std::move(row_weight));
  std::set<std::string> groups;
  for (const auto& q : questions) {
    if (!q.group.empty()) groups.insert(q.group);
  }
  std::vector<float> attribute(questions.size(), 0.0f);
  if (uses_decorrelation(o.fairness_loss)) {
    KVRAG_CHECK(groups.size() == 2,
                "{}: --fairness-loss decorrelation needs questions whose \"group\" takes exactly "
                "two values; found {}",
                o.train, groups.size());
    for (size_t i = 0; i < questions.size(); ++i) {
      if (!questions[i].group.empty())
        attribute[i] = questions[i].group == *groups.begin() ? -1.0f : 1.0f;
    }
  }
  std::vector<PrefixExample> twins;
  std::vector<char> has_twin;
  if (uses_counterfactual(o.fairness_loss)) {
    KVRAG_CHECK(o.oracle,
                "train-prefix: --fairness-loss counterfactual needs --oracle (twins are passages)");
    std::vector<Question> twin_questions;
    std::vector<size_t> twin_rows;
    for (size_t i = 0; i < questions.size(); ++i) {
      if (questions[i].twin_passage_id.empty()) continue;
      twin_questions.push_back(questions[i]);
      twin_questions.back().gold_passage_id = questions[i].twin_passage_id;
      twin_rows.push_back(i);
    }
    KVRAG_CHECK(!twin_rows.empty(),
                "{}: --fairness-loss counterfactual needs questions with a \"twin_passage_id\"",
                o.train);
    const auto segments = oracle_segments({&twin_questions}, {o.train}, o.passages);
    twins = examples;
    has_twin.assign(questions.size(), 0);
    for (size_t k = 0; k < twin_rows.size(); ++k) {
      const size_t i = twin_rows[k];
      twins[i] = pipeline.example(questions[i].question, target_answer(questions[i]), segments[k],
                                  fmt::format("{}: question {} (twin)", o.train, i + 1));
      has_twin[i] = 1;
    }
  }
  return FairnessObjective(o.fairness_weight, o.fairness_loss, std::move(attribute),
                           std::move(twins), std::move(has_twin), std::move(row_weight));
}

}  // namespace

std::string target_answer(const Question& q) {
  for (const auto& a : q.answers) {
    if (a.find_first_not_of(" \t\r\n") != std::string::npos) return a;
  }
  return "";
}

PrefixTrainResult train_prefix(const PrefixTrainOptions& o) {
  KVRAG_CHECK(!o.out.empty(), "train-prefix: --out is required");
  KVRAG_CHECK(!o.llm.empty(), "train-prefix: --llm is required");
  KVRAG_CHECK(!o.init.empty(),
              "train-prefix: --init is required (a BERT/retriever folder or a knowledge encoder)");
  KVRAG_CHECK(!o.train.empty(), "train-prefix: --train is required");
  KVRAG_CHECK(o.distractors >= 0, "train-prefix: --distractors must not be negative, got {}",
              o.distractors);
  KVRAG_CHECK(o.oracle || o.distractors == 0,
              "train-prefix: --distractors needs --oracle (an index's top-k brings its own)");
  KVRAG_CHECK(o.distractors == 0 || o.fairness_weight <= 0,
              "train-prefix: --distractors and --fairness-weight together are not supported");
  KVRAG_CHECK(o.oracle != (o.retriever != nullptr),
              "train-prefix: choose one segment source: --oracle --passages FILE, or --index DIR");
  KVRAG_CHECK(!o.oracle || !o.passages.empty(), "train-prefix: --oracle needs --passages");
  KVRAG_CHECK(o.top_k >= 1, "train-prefix: --top-k must be at least 1, got {}", o.top_k);
  KVRAG_CHECK(!o.oracle || o.top_k == 1,
              "train-prefix: --oracle gives one segment per question; --top-k must be 1");
  o.encoder.validate();
  KVRAG_CHECK(o.max_new_tokens >= 1, "train-prefix: max new tokens must be positive");
  o.optim.validate();
  const auto llm_dtype = parse_model_dtype(o.llm_dtype);
  // The products run on BLAS's own threads (ops/threads.h, SerialIntraOpGuard): with an OpenMP
  // team beside them, 38 examples/s on 2 cores instead of 99.
  SerialIntraOpGuard serial(matmul_uses_blas_threads(llm_dtype));
  // Data parallel (train/data_parallel.h): every rank reads the data, sees the same order and
  // computes its slice of each batch; rank 0 alone validates, writes files and talks.
  Communicator& comm = Communicator::world();

  // The frozen LLM (no gradients, and make_adamw takes the encoder only: no optimizer state)
  // with its tokenizer, in the pipeline that answering uses too.
  PrefixPipeline pipeline(o.llm, llm_dtype);

  // The encoder: fresh heads over a BERT/retriever checkpoint, or a knowledge encoder to go on
  // training (which must have been made for this LLM).
  KnowledgeEncoder encoder{nullptr};
  check_model_folder(o.init, {ModelFolder::kBert, ModelFolder::kKnowledgeEncoder},
                     "train-prefix --init");
  if (is_knowledge_encoder_dir(o.init)) {
    encoder = load_knowledge_encoder(o.init);
    check_compatible(encoder->config(), pipeline.llm_config(), pipeline.llm_fingerprint(), o.init);
  } else {
    encoder = init_knowledge_encoder(o.init, pipeline.llm(), &pipeline.tokenizer(),
                                     pipeline.llm_fingerprint(), o.encoder, o.optim.seed);
  }
  const std::string vocab = o.init + "/vocab.txt";
  KVRAG_CHECK(fs::exists(vocab),
              "encoder folder {}: no vocab.txt (the encoder's WordPiece vocabulary)", o.init);
  try {
    pipeline.set_encoder(encoder, vocab);
  } catch (Error& e) {
    throw e.with_context("encoder folder " + o.init);
  }
  const auto& config = encoder->config();

  // Data: questions, their segments (fetched once), tokenized examples.
  auto train_questions = read_questions(o.train, /*allow_empty=*/true);
  KVRAG_CHECK(!train_questions.empty(), "{}: no questions to train on (the file is empty)",
              o.train);
  std::vector<Question> dev_questions;
  if (!o.dev.empty()) {
    dev_questions = read_questions(o.dev, /*allow_empty=*/true);
    KVRAG_CHECK(!dev_questions.empty(), "{}: no questions to validate on (the file is empty)",
                o.dev);
    if (o.max_dev > 0 && static_cast<int64_t>(dev_questions.size()) > o.max_dev)
      dev_questions.resize(o.max_dev);
  }
  std::vector<SegmentTexts> train_segments, dev_segments;
  constexpr uint64_t kTrainStream = 1, kDevStream = 2;
  if (o.oracle) {
    auto all = oracle_segments({&train_questions, &dev_questions}, {o.train, o.dev}, o.passages);
    train_segments.assign(all.begin(), all.begin() + static_cast<int64_t>(train_questions.size()));
    dev_segments.assign(all.begin() + static_cast<int64_t>(train_questions.size()), all.end());
    if (o.distractors > 0) {  // the training set's gold passages, each once
      std::vector<PromptPassage> pool;
      std::set<std::pair<std::string, std::string>> seen;
      for (const auto& segments : train_segments) {
        if (seen.insert({segments.front().title, segments.front().text}).second)
          pool.push_back(segments.front());
      }
      add_distractors(train_segments, pool, o.distractors, o.optim.seed, kTrainStream);
      add_distractors(dev_segments, pool, o.distractors, o.optim.seed, kDevStream);
    }
  } else {
    train_segments = retrieved_segments(train_questions, o.train, *o.retriever, o.top_k);
    dev_segments = retrieved_segments(dev_questions, o.dev, *o.retriever, o.top_k);
  }
  PrefixTrainResult result;
  const auto tokenize = [&](const std::vector<Question>& qs, const std::vector<SegmentTexts>& segs,
                            const std::string& file) {
    std::vector<PrefixExample> out;
    for (size_t i = 0; i < qs.size(); ++i) {
      const std::string where = fmt::format("{}: question {}", file, i + 1);
      KVRAG_CHECK(!qs[i].answers.empty(), "{}: no answers (\"{}\")", where, qs[i].question);
      auto ex = pipeline.example(qs[i].question, target_answer(qs[i]), segs[i], where);
      for (const auto& s : ex.segments) result.truncated_segments += s.truncated ? 1 : 0;
      out.push_back(std::move(ex));
    }
    return out;
  };
  const auto train_examples = tokenize(train_questions, train_segments, o.train);
  const auto dev_examples = tokenize(dev_questions, dev_segments, o.dev);
  const FairnessObjective fairness =
      fairness_objective(o, pipeline, train_questions, train_examples);
  std::vector<std::set<int64_t>> dev_evidence;  // the LLM's tokens of each dev question's segments
  for (const auto& segments : dev_segments) {
    std::set<int64_t> ids;
    // with distractors, the gold passage's (the rows read vary by batch)
    const size_t read = o.distractors > 0 ? 1 : segments.size();
    for (size_t r = 0; r < read; ++r) {
      for (const auto* text : {&segments[r].title, &segments[r].text}) {
        for (const auto id : pipeline.tokenizer().encode(*text, false)) ids.insert(id);
      }
    }
    dev_evidence.push_back(std::move(ids));
  }
  std::vector<int64_t> lengths;  // encoder tokens of each training example (--group-by-length)
  for (const auto& ex : train_examples) {
    int64_t t = 0;
    for (const auto& s : ex.segments) t += static_cast<int64_t>(s.ids.size());
    lengths.push_back(t);
  }
  constexpr int64_t kLengthGroupBatches = 32;

  // Optimisation.
  encoder->train();
  auto optimizer = make_adamw(*encoder, o.optim);
  const auto params = trainable_parameters(*encoder);
  const int64_t n = static_cast<int64_t>(train_examples.size());
  const int64_t B = o.optim.batch_size, accumulation = o.optim.accumulation;
  KVRAG_CHECK(B >= comm.size(),
              "train-prefix: a batch of {} examples cannot be shared by {} processes", B,
              comm.size());
  const int64_t micro_per_epoch = (n + B - 1) / B;
  const int64_t steps_per_epoch = (micro_per_epoch + accumulation - 1) / accumulation;
  LrSchedule schedule(o.optim, steps_per_epoch * o.optim.epochs);

  // Validation answers the dev questions as `kvrag eval` does: the same pipeline calls, in
  // batches of its default size (QaEvalOptions::batch).
  constexpr int64_t kValidationBatch = 16;
  const auto validate = [&]() {
    torch::NoGradGuard no_grad;
    encoder->eval();
    Validation v;
    double loss_sum = 0, exact = 0, without_sum = 0, in_evidence = 0, words = 0;
    int64_t loss_tokens = 0;
    for (int64_t begin = 0; begin < static_cast<int64_t>(dev_examples.size());
         begin += kValidationBatch) {
      const int64_t end = std::min<int64_t>(dev_examples.size(), begin + kValidationBatch);
      std::vector<int64_t> rows;
      for (int64_t i = begin; i < end; ++i) rows.push_back(i);
      const auto batch =
          o.distractors > 0
              ? pipeline.batch(read_view(dev_examples, rows, o.distractors, o.optim.seed,
                                         kDevStream, begin / kValidationBatch),
                               iota_rows(rows.size()))
              : pipeline.batch(dev_examples, rows);
      const auto prefix = pipeline.prefix(batch);
      // [N, V], [N]: with the prefix (the loss, as pipeline.loss) and closed-book
      const auto with = answer_logits(pipeline.llm(), batch, &prefix);
      const auto without = answer_logits(pipeline.llm(), batch, nullptr);
      const auto tokens = static_cast<double>(batch.answer_tokens);
      loss_sum +=
          torch::nn::functional::cross_entropy(with.logits, with.labels).item<double>() * tokens;
      without_sum +=
          torch::nn::functional::cross_entropy(without.logits, without.labels).item<double>() *
          tokens;
      loss_tokens += batch.answer_tokens;
      const auto argmax = with.logits.argmax(1).contiguous();  // [N]
      const int64_t* top = argmax.data_ptr<int64_t>();
      int64_t k = 0;  // answer positions, row-major
      for (int64_t b = 0; b < batch.size(); ++b) {
        const auto& ids = dev_evidence[begin + b];
        for (int64_t j = 0; j < batch.target_lengths[b]; ++j, ++k) {
          if (j + 1 == batch.target_lengths[b]) continue;  // EOS
          words += 1;
          in_evidence += ids.count(top[k]) > 0 ? 1 : 0;
        }
      }
      const auto answers = pipeline.generate(batch, prefix, o.max_new_tokens);
      for (int64_t i = begin; i < end; ++i)
        exact += exact_match(answers[i - begin], dev_questions[i].answers);
    }
    encoder->train();
    v.em = dev_examples.empty() ? 0.0 : exact / static_cast<double>(dev_examples.size());
    v.loss = loss_tokens > 0 ? loss_sum / static_cast<double>(loss_tokens) : 0.0;
    v.logprob_with = -v.loss;
    v.logprob_without = loss_tokens > 0 ? -without_sum / static_cast<double>(loss_tokens) : 0.0;
    v.argmax_in_evidence = words > 0 ? in_evidence / words : 0.0;
    return v;
  };

  // The run's state; a resume point restores it along with parameters and optimizer.
  nlohmann::json state = {{"step", 0},
                          {"epoch", 0},
                          {"batch", 0},
                          {"loss_sum", 0.0},
                          {"loss_count", 0},
                          {"fairness_sum", 0.0},
                          {"best_epoch", -1},
                          {"best_em", -1.0},
                          {"best_loss", 0.0},
                          {"initial_dev_em", -1.0},
                          {"history", nlohmann::json::array()}};
  if (load_resume_point_on_ranks(o.out, *encoder, *optimizer, &state, comm)) {
    schedule.load_state(state.at("schedule"));
  } else if (!dev_examples.empty()) {
    double em = comm.is_root() ? validate().em : 0.0;  // on rank 0, the others wait
    comm.broadcast(&em);
    state["initial_dev_em"] = em;
  }
  result.initial_dev_em = state["initial_dev_em"].get<double>();

  nlohmann::json data_parallel = {{"ranks", comm.size()}};
  const auto write_report = [&] {
    if (!comm.is_root()) return;
    nlohmann::json report = {{"llm", o.llm},
                             {"llm_dtype", o.llm_dtype},
                             {"llm_fingerprint", pipeline.llm_fingerprint()},
                             {"init", o.init},
                             {"segments", o.oracle ? "oracle" : "index"},
                             {"top_k", o.top_k + o.distractors},
                             {"distractors", o.distractors},
                             {"prefix_length", config.prefix_length},
                             {"max_segment_tokens", config.segment_limit()},
                             {"readout", enum_name(config.readout)},
                             {"llm_embeddings", config.llm_embeddings},
                             {"segment_tokenizer", enum_name(config.segment_tokenizer)},
                             {"key_position", enum_name(config.key_position)},
                             {"group_by_length", o.group_by_length},
                             {"fairness_weight", o.fairness_weight},
                             {"fairness_loss", enum_name(o.fairness_loss)},
                             {"balance_answers", o.balance_answers},
                             {"train", o.train},
                             {"train_questions", n},
                             {"dev", o.dev},
                             {"dev_questions", dev_examples.size()},
                             {"optim", o.optim.to_json()},
                             {"initial_dev_em", state["initial_dev_em"]},
                             {"epochs", state["history"]},
                             {"best_epoch", state["best_epoch"]},
                             {"best_dev_em", state["best_em"]},
                             {"steps", state["step"]},
                             {"examples_per_s", result.examples_per_s},
                             {"peak_rss_bytes", peak_rss_bytes()},
                             {"truncated_segments", result.truncated_segments},
                             {"data_parallel", data_parallel}};
    write_file_atomic(o.out + "/train_report.json", report.dump(2) + "\n");
  };

  ProgressOptions progress_options;
  progress_options.label = "train-prefix";
  progress_options.unit = "examples";
  progress_options.total_items = n * o.optim.epochs;
  progress_options.start_items =
      std::min(n, state["batch"].get<int64_t>() * B) + state["epoch"].get<int64_t>() * n;
  progress_options.enabled = o.progress && comm.is_root();
  ProgressReporter progress(progress_options);

  // A training micro-batch; with distractors, of the segments it reads (read_view).
  const auto train_batch = [&](const std::vector<int64_t>& rows, int64_t epoch, int64_t micro) {
    if (o.distractors == 0) return pipeline.batch(train_examples, rows);
    return pipeline.batch(read_view(train_examples, rows, o.distractors, o.optim.seed,
                                    kTrainStream + static_cast<uint64_t>(epoch) * 16, micro),
                          iota_rows(rows.size()));
  };

  int64_t step = state["step"].get<int64_t>();
  int64_t steps_this_run = 0;
  double train_seconds = 0;
  std::string dev_note;  // the last validation's reliance on the evidence, for the progress line
  for (int64_t epoch = state["epoch"].get<int64_t>(); epoch < o.optim.epochs; ++epoch) {
    auto order = epoch_order(n, o.optim.seed, epoch);
    if (o.group_by_length)
      order = length_grouped_order(order, lengths, B, kLengthGroupBatches, o.optim.seed, epoch);
    int64_t micro = state["batch"].get<int64_t>();
    double loss_sum = state["loss_sum"].get<double>();
    int64_t loss_count = state["loss_count"].get<int64_t>();
    double fairness_sum = state.value("fairness_sum", 0.0);
    while (micro < micro_per_epoch) {
      const auto started = std::chrono::steady_clock::now();
      // in this optimizer step
      const int64_t micros = std::min(accumulation, micro_per_epoch - micro);
      double step_loss = 0, step_fairness = 0;
      int64_t step_rows = 0;
      for (int64_t a = 0; a < micros; ++a, ++micro) {
        const int64_t begin = micro * B, end = std::min(n, begin + B);
        const int64_t global_rows = end - begin;
        if (!comm.distributed()) {
          const std::vector<int64_t> rows(order.begin() + begin, order.begin() + end);
          const auto batch = train_batch(rows, epoch, micro);
          double term = 0;
          const auto loss = fairness.loss(pipeline, batch, pipeline.prefix(batch), rows, &term);
          (loss / static_cast<double>(micros)).backward();
          step_fairness += term * static_cast<double>(rows.size());
          const double value = loss.item<double>();
          KVRAG_CHECK(std::isfinite(value), "train-prefix: the loss is {} at step {} (lower --lr?)",
                      value, step);
          step_loss += value * static_cast<double>(rows.size());
          step_rows += global_rows;
          continue;
        }
        // This rank's slice of the micro-batch. The loss is a mean over answer tokens, so the
        // slice's loss is weighted by its share of the micro-batch's tokens: summed over ranks,
        // losses and gradients are the whole micro-batch's. A fairness term (a mean over the
        // slice's twins, or a correlation within the slice) is weighted the same way: close to,
        // not exactly, one process's term over the whole micro-batch.
        const auto [lo, hi] = rank_slice(global_rows, comm.rank(), comm.size());
        int64_t tokens = 0;
        for (int64_t r = begin; r < end; ++r) tokens += train_examples[order[r]].target.size();
        if (hi > lo) {
          const std::vector<int64_t> rows(order.begin() + begin + lo, order.begin() + begin + hi);
          const auto batch = train_batch(rows, epoch, micro);
          const double share = static_cast<double>(batch.answer_tokens) / tokens;
          double term = 0;
          const auto loss = fairness.loss(pipeline, batch, pipeline.prefix(batch), rows, &term);
          (loss * (share / static_cast<double>(micros))).backward();
          step_fairness += term * share * static_cast<double>(global_rows);
          const double value = loss.item<double>();
          KVRAG_CHECK(std::isfinite(value), "train-prefix: the loss is {} at step {} (lower --lr?)",
                      value, step);
          step_loss += value * share * static_cast<double>(global_rows);
        }
        step_rows += global_rows;
      }
      if (comm.distributed()) {
        comm.allreduce_sum(&step_loss, 1);
        comm.allreduce_sum(&step_fairness, 1);
        allreduce_gradients(params, comm);  // the whole batch's gradient on every rank
      }
      const double lr = schedule.lr(step);
      optimizer_step(*optimizer, lr, o.optim.clip_norm);
      ++step;
      ++steps_this_run;
      loss_sum += step_loss;
      fairness_sum += step_fairness;
      loss_count += step_rows;
      result.examples += step_rows;
      train_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      result.examples_per_s =
          train_seconds > 0 ? static_cast<double>(result.examples) / train_seconds : 0;
      progress.set_note(fmt::format("epoch {}  loss {:.4f}  lr {:.2e}  {:.1f} ex/s{}", epoch + 1,
                                    step_loss / static_cast<double>(step_rows), lr,
                                    result.examples_per_s, dev_note));
      progress.update(0, epoch * n + std::min(n, micro * B));
      state["step"] = step;
      state["epoch"] = epoch;
      state["batch"] = micro;
      state["loss_sum"] = loss_sum;
      state["loss_count"] = loss_count;
      state["fairness_sum"] = fairness_sum;
      if (o.save_every > 0 && step % o.save_every == 0 && micro < micro_per_epoch) {
        state["schedule"] = schedule.state();
        save_resume_point_on_ranks(o.out, *encoder, *optimizer, state, comm);
      }
      if (o.stop_after_steps > 0 && steps_this_run >= o.stop_after_steps) {
        result.stopped = true;
        result.steps = step;
        result.peak_rss_bytes = peak_rss_bytes();
        return result;
      }
    }

    // End of the epoch: validate, keep the best encoder, then record the resume point.
    nlohmann::json entry = {
        {"epoch", epoch},
        {"loss", loss_count > 0 ? loss_sum / static_cast<double>(loss_count) : 0.0}};
    if (fairness.enabled())  // the mean fairness term (the loss holds λ times it)
      entry["fairness_term"] = loss_count > 0 ? fairness_sum / static_cast<double>(loss_count) : 0;
    bool better = true;
    if (!dev_examples.empty()) {
      Validation v;  // on rank 0, the others wait
      if (comm.is_root()) v = validate();
      comm.broadcast(&v.em);
      comm.broadcast(&v.loss);
      entry["dev_em"] = v.em;
      entry["dev_loss"] = v.loss;
      entry["dev_logprob_with"] = v.logprob_with;
      entry["dev_logprob_without"] = v.logprob_without;
      entry["dev_logprob_gap"] = v.logprob_with - v.logprob_without;
      entry["dev_argmax_in_evidence"] = v.argmax_in_evidence;
      dev_note = fmt::format("  dev EM {:.3f} gap {:+.3f} in-evidence {:.3f}", v.em,
                             v.logprob_with - v.logprob_without, v.argmax_in_evidence);
      schedule.on_validation(v.em);
      const double best_em = state["best_em"].get<double>(),
                   best_loss = state["best_loss"].get<double>();
      better = state["best_epoch"].get<int64_t>() < 0 || v.em > best_em + 1e-12 ||
               (std::abs(v.em - best_em) <= 1e-12 && v.loss < best_loss);
      if (better) {
        state["best_em"] = v.em;
        state["best_loss"] = v.loss;
      }
    }
    if (better) {
      state["best_epoch"] = epoch;
      if (comm.is_root()) save_knowledge_encoder(*encoder, o.out, vocab);
    }
    state["history"].push_back(entry);
    state["epoch"] = epoch + 1;
    state["batch"] = 0;
    state["loss_sum"] = 0.0;
    state["loss_count"] = 0;
    state["fairness_sum"] = 0.0;
    state["schedule"] = schedule.state();
    save_resume_point_on_ranks(o.out, *encoder, *optimizer, state, comm);
    write_report();
  }
  progress.finish(0, n * o.optim.epochs);

  for (const auto& e : state["history"]) {
    result.epoch_loss.push_back(e["loss"].get<double>());
    if (e.contains("dev_em")) {
      result.dev_em.push_back(e["dev_em"].get<double>());
      result.dev_loss.push_back(e["dev_loss"].get<double>());
    }
  }
  result.best_epoch = state["best_epoch"].get<int>();
  result.best_dev_em = dev_examples.empty() ? -1.0 : state["best_em"].get<double>();
  result.steps = step;
  result.peak_rss_bytes = peak_rss_bytes();
  // Every rank's parameter fingerprint (they must agree; check_ranks_agree fails otherwise).
  data_parallel["parameter_fingerprints"] = check_ranks_agree(*encoder, comm, o.out);
  write_report();
  return result;
}

}  // namespace kvrag
