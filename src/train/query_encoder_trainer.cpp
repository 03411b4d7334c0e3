#include "train/query_encoder_trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "index/dense_retriever.h"
#include "index/index_retriever.h"
#include "index/retrieval_eval.h"
#include "index/segment_store.h"
#include "prefix/prefix_pipeline.h"
#include "text/wordpiece_tokenizer.h"
#include "train/bert_encoder.h"
#include "train/data_parallel.h"
#include "train/prefix_trainer.h"
#include "train/train_state.h"

namespace kvrag {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The questions of one file as the trainer uses them: encoder tokens, the LLM's target, and the
// cache of log p_LM(answer | question, segment) by segment id.
struct QuestionSet {
  std::string file;
  std::vector<Question> questions;
  std::vector<TokenIds> tokens;
  std::vector<std::string> targets;
  std::vector<std::unordered_map<int64_t, double>> likelihood;
  bool has_gold = false;
};

QuestionSet read_set(const std::string& file, int64_t max_questions, const WordPieceTokenizer& tok,
                     int max_length) {
  QuestionSet s;
  s.file = file;
  s.questions = read_questions(file, /*allow_empty=*/true);
  KVRAG_CHECK(!s.questions.empty(), "{}: no questions (the file is empty)", file);
  if (max_questions > 0 && static_cast<int64_t>(s.questions.size()) > max_questions)
    s.questions.resize(max_questions);
  for (size_t i = 0; i < s.questions.size(); ++i) {
    const auto& q = s.questions[i];
    s.targets.push_back(target_answer(q));
    KVRAG_CHECK(!s.targets.back().empty(),
                "{}: question {}: no answer to train on (\"{}\"): the LLM's likelihood of the "
                "answer is the only training signal",
                file, i + 1, q.question);
    s.tokens.push_back(encode_text(tok, q.question, max_length));
    s.has_gold = s.has_gold || !q.gold_passage_id.empty();
  }
  s.likelihood.resize(s.questions.size());
  return s;
}

// Top-k segment ids of each row of `queries` [B, D] in the index, -1 where it has fewer.
std::vector<int64_t> search(const DenseIndex& index, const torch::Tensor& queries, int k) {
  const auto q = queries.detach().to(torch::kFloat32).contiguous();
  const auto result = index.search(q.size(0), q.data_ptr<float>(), k);
  return result.ids;
}

class Trainer {
 public:
  Trainer(const QueryEncoderTrainOptions& o, PrefixPipeline& pipeline, DenseRetriever& dense,
          SegmentStore& store)
      : o_(o), pipeline_(pipeline), dense_(dense), store_(store) {
    k_ = static_cast<int>(std::min<int64_t>(o.top_k, dense.index().size()));
    KVRAG_CHECK(k_ >= 1, "index {}: the dense index holds no vectors", o.index);
  }

  int k() const { return k_; }
  int64_t llm_scores() const { return llm_scores_; }

  // Fills the cache for every (row, segment) of `ids` [rows × k] not in it yet: the frozen LLM's
  // teacher-forced log-likelihood of the row's answer given the segment's prefix (its tokens and
  // EOS: the mean log-probability times the target length).
  void score(QuestionSet& set, const std::vector<int64_t>& rows, const std::vector<int64_t>& ids) {
    std::vector<std::pair<int64_t, int64_t>> missing;  // (question, segment)
    std::set<std::pair<int64_t, int64_t>> seen;
    for (size_t r = 0; r < rows.size(); ++r) {
      for (int j = 0; j < k_; ++j) {
        const int64_t id = ids[r * k_ + j];
        if (id < 0 || set.likelihood[rows[r]].count(id)) continue;
        if (seen.insert({rows[r], id}).second) missing.push_back({rows[r], id});
      }
    }
    if (missing.empty()) return;
    torch::NoGradGuard no_grad;
    constexpr size_t kChunk = 16;
    for (size_t begin = 0; begin < missing.size(); begin += kChunk) {
      const size_t end = std::min(missing.size(), begin + kChunk);
      std::vector<int64_t> segment_ids;
      for (size_t i = begin; i < end; ++i) segment_ids.push_back(missing[i].second);
      const auto segments = store_.get_many(segment_ids);
      std::vector<PrefixExample> examples;
      std::vector<int64_t> batch_rows;
      for (size_t i = begin; i < end; ++i) {
        const int64_t q = missing[i].first;
        const auto& seg = segments[i - begin];
        examples.push_back(pipeline_.example(
            set.questions[q].question, set.targets[q], {PromptPassage{seg.title, seg.text}},
            fmt::format("{}: question {} with segment {}", set.file, q + 1, seg.id)));
        batch_rows.push_back(static_cast<int64_t>(batch_rows.size()));
      }
      const auto batch = pipeline_.batch(examples, batch_rows);
      const auto scores = pipeline_.scores(batch, pipeline_.prefix(batch));
      for (size_t i = begin; i < end; ++i) {
        const size_t b = i - begin;
        set.likelihood[missing[i].first][missing[i].second] =
            scores[b].logprob * static_cast<double>(batch.target_lengths[b]);
      }
      llm_scores_ += static_cast<int64_t>(end - begin);
    }
  }

  // −log Σ_z p(z | q) p_LM(y | q, z) over each row's top-k `ids`, averaged over rows. `queries`
  // [B, D] (with autograd when training).
  torch::Tensor loss(QuestionSet& set, const std::vector<int64_t>& rows,
                     const torch::Tensor& queries, const std::vector<int64_t>& ids) {
    score(set, rows, ids);
    const int64_t B = static_cast<int64_t>(rows.size()), D = queries.size(1);
    std::vector<int64_t> valid_ids;
    for (const int64_t id : ids) valid_ids.push_back(std::max<int64_t>(id, 0));
    auto passages = torch::empty({B * k_, D}, torch::kFloat32);  // [B·k, D]
    dense_.vectors().get(valid_ids, passages.data_ptr<float>());
    passages = passages.view({B, k_, D});                                      // [B, k, D]
    auto logits = (queries.unsqueeze(1) * passages).sum(-1) / o_.temperature;  // [B, k]
    auto lm = torch::zeros({B, k_}, torch::kFloat32);                          // [B, k]
    auto mask = torch::zeros({B, k_}, torch::kBool);                           // [B, k] missing
    auto* lm_p = lm.data_ptr<float>();
    auto* mask_p = mask.data_ptr<bool>();
    for (int64_t r = 0; r < B; ++r) {
      for (int j = 0; j < k_; ++j) {
        const int64_t id = ids[r * k_ + j];
        if (id < 0) {
          mask_p[r * k_ + j] = true;
        } else {
          lm_p[r * k_ + j] = static_cast<float>(set.likelihood[rows[r]].at(id));
        }
      }
    }
    logits = logits.masked_fill(mask, -std::numeric_limits<float>::infinity());
    const auto log_prior = torch::log_softmax(logits, 1);  // [B, k]
    return -torch::logsumexp(log_prior + lm, 1).mean();
  }

  // Dev loss and gold-in-top-1/5 with the encoder as it is.
  std::pair<double, RetrievalAtK> validate(BertModel& query, QuestionSet& set, TokenId pad,
                                           const std::string& pooling) {
    torch::NoGradGuard no_grad;
    query->eval();
    const auto vectors = embed_all(query, set.tokens, pad, pooling);  // [Q, D]
    const int depth = std::max(k_, static_cast<int>(std::min<int64_t>(5, dense_.index().size())));
    const auto all = search(dense_.index(), vectors, depth);
    const int64_t Q = vectors.size(0);
    std::vector<int64_t> rows, ids;
    for (int64_t q = 0; q < Q; ++q) {
      rows.push_back(q);
      for (int j = 0; j < k_; ++j) ids.push_back(all[q * depth + j]);
    }
    const double loss = this->loss(set, rows, vectors, ids).item<double>();
    RetrievalAtK at;
    if (set.has_gold) {
      std::vector<int64_t> found;
      for (const int64_t id : all) found.push_back(std::max<int64_t>(id, 0));
      const auto segments = store_.get_many(found);
      double top1 = 0, top5 = 0;
      for (int64_t q = 0; q < Q; ++q) {
        const auto& gold = set.questions[q].gold_passage_id;
        for (int j = 0; j < std::min(depth, 5); ++j) {
          if (all[q * depth + j] < 0 || segments[q * depth + j].doc_id != gold) continue;
          top1 += j == 0 ? 1 : 0;
          top5 += 1;
          break;
        }
      }
      at.top1 = top1 / static_cast<double>(Q);
      at.top5 = top5 / static_cast<double>(Q);
    }
    query->train();
    return {loss, at};
  }

 private:
  const QueryEncoderTrainOptions& o_;
  PrefixPipeline& pipeline_;
  DenseRetriever& dense_;
  SegmentStore& store_;
  int k_ = 1;
  int64_t llm_scores_ = 0;
};

RetrievalAtK at_from(const json& j) {
  RetrievalAtK at;
  if (j.is_object()) {
    at.top1 = j.at("gold_in_top1").get<double>();
    at.top5 = j.at("gold_in_top5").get<double>();
  }
  return at;
}

}  // namespace

json RetrievalAtK::to_json() const {
  if (top1 < 0) return nullptr;
  return {{"gold_in_top1", top1}, {"gold_in_top5", top5}};
}

QueryEncoderTrainResult train_query_encoder(const QueryEncoderTrainOptions& o) {
  KVRAG_CHECK(!o.out.empty(), "train-query-encoder: --out is required");
  KVRAG_CHECK(!o.llm.empty(), "train-query-encoder: --llm is required");
  KVRAG_CHECK(!o.knowledge_encoder.empty(), "train-query-encoder: --knowledge-encoder is required");
  KVRAG_CHECK(!o.index.empty(), "train-query-encoder: --index is required");
  KVRAG_CHECK(!o.train.empty(), "train-query-encoder: --train is required");
  KVRAG_CHECK(o.top_k >= 2,
              "train-query-encoder: --top-k must be at least 2 (the retriever "
              "learns from how the LLM's likelihood differs between segments), got {}",
              o.top_k);
  KVRAG_CHECK(o.temperature > 0, "train-query-encoder: --temperature must be positive, got {}",
              o.temperature);
  o.optim.validate();
  KVRAG_CHECK(o.optim.schedule != "plateau" || !o.dev.empty(),
              "train-query-encoder: --schedule plateau needs --dev (it follows the dev loss)");
  Communicator& comm = Communicator::world();
  KVRAG_CHECK(comm.size() == 1,
              "train-query-encoder runs in one process; it was started as {} (mpirun -np)",
              comm.size());
  const auto llm_dtype = parse_model_dtype(o.llm_dtype);
  SerialIntraOpGuard serial(matmul_uses_blas_threads(llm_dtype));

  // The index: its frozen passage vectors and segments, and the start encoder checked against
  // them (DenseRetriever::open refuses an encoder the index was not embedded with or paired to).
  KVRAG_CHECK(fs::is_directory(o.index), "index {}: no such folder", o.index);
  KVRAG_CHECK(has_dense_vectors(o.index),
              "index {}: no dense vectors (embeddings/ and dense.faiss): the query encoder is "
              "trained against them (kvrag embed, kvrag index build)",
              o.index);
  EmbedderOptions embedder_options;
  embedder_options.dtype = "fp32";
  auto dense = DenseRetriever::open(o.index, o.init, embedder_options);
  const auto& start_embedder = dense->embedder();
  const std::string passage_dir = start_embedder.passage_encoder().empty()
                                      ? start_embedder.dir()
                                      : start_embedder.passage_encoder();
  auto store = SegmentStore::open(o.index + "/segments.sqlite");
  const auto folder = read_encoder_folder(start_embedder.dir(), "train-query-encoder --init");
  const auto tok = load_tokenizer(folder);
  BertModel query = load_trainable_bert(folder, *tok);
  const int max_length = start_embedder.max_length();

  // The frozen LLM and knowledge encoder.
  PrefixPipeline pipeline(o.llm, llm_dtype);
  pipeline.load_encoder(o.knowledge_encoder);

  QuestionSet train = read_set(o.train, 0, *tok, max_length);
  QuestionSet dev;
  if (!o.dev.empty()) dev = read_set(o.dev, o.max_dev, *tok, max_length);
  Trainer trainer(o, pipeline, *dense, *store);

  fs::create_directories(o.out);
  // The exported encoder names its passage encoder relative to itself (index/embedder.h).
  const std::string passage_rel = fs::weakly_canonical(fs::absolute(passage_dir))
                                      .lexically_relative(fs::weakly_canonical(fs::absolute(o.out)))
                                      .string();
  query->train();
  auto optimizer = make_adamw(*query, o.optim);
  const int64_t n = static_cast<int64_t>(train.questions.size());
  const int64_t B = std::min<int64_t>(o.optim.batch_size, n);
  const int64_t batches_per_epoch = (n + B - 1) / B;
  const int64_t accumulation = o.optim.accumulation;
  const int64_t steps_per_epoch = (batches_per_epoch + accumulation - 1) / accumulation;
  LrSchedule schedule(o.optim, steps_per_epoch * o.optim.epochs);

  QueryEncoderTrainResult result;
  json state = {{"step", 0},
                {"epoch", 0},
                {"batch", 0},
                {"loss_sum", 0.0},
                {"loss_count", 0},
                {"best_epoch", -1},
                {"best_loss", 0.0},
                {"initial_dev_loss", -1.0},
                {"initial_dev", nullptr},
                {"history", json::array()}};
  if (load_resume_point(o.out, *query, *optimizer, &state)) {
    schedule.load_state(state.at("schedule"));
  } else if (!o.dev.empty()) {
    const auto [loss, at] = trainer.validate(query, dev, tok->pad_id(), folder.pooling);
    state["initial_dev_loss"] = loss;
    state["initial_dev"] = at.to_json();
  }

  const auto write_report = [&] {
    json report = {{"llm", o.llm},
                   {"llm_dtype", o.llm_dtype},
                   {"knowledge_encoder", o.knowledge_encoder},
                   {"index", o.index},
                   {"init", start_embedder.dir()},
                   {"passage_encoder", passage_dir},
                   {"train", o.train},
                   {"train_questions", n},
                   {"dev", o.dev},
                   {"dev_questions", dev.questions.size()},
                   {"top_k", trainer.k()},
                   {"temperature", o.temperature},
                   {"optim", o.optim.to_json()},
                   {"initial_dev_loss", state["initial_dev_loss"]},
                   {"initial_dev", state["initial_dev"]},
                   {"epochs", state["history"]},
                   {"best_epoch", state["best_epoch"]},
                   {"steps", state["step"]},
                   {"llm_scores", trainer.llm_scores()},
                   {"peak_rss_bytes", peak_rss_bytes()}};
    write_file_atomic(o.out + "/train_report.json", report.dump(2) + "\n");
  };

  ProgressOptions progress_options;
  progress_options.label = "train-query-encoder";
  progress_options.unit = "questions";
  progress_options.total_items = n * o.optim.epochs;
  progress_options.start_items =
      std::min(n, state["batch"].get<int64_t>() * B) + state["epoch"].get<int64_t>() * n;
  progress_options.enabled = o.progress;
  ProgressReporter progress(progress_options);

  int64_t step = state["step"].get<int64_t>(), steps_this_run = 0;
  for (int64_t epoch = state["epoch"].get<int64_t>(); epoch < o.optim.epochs; ++epoch) {
    const auto order = epoch_order(n, o.optim.seed, epoch);
    int64_t batch = state["batch"].get<int64_t>();
    double loss_sum = state["loss_sum"].get<double>();
    int64_t loss_count = state["loss_count"].get<int64_t>();
    while (batch < batches_per_epoch) {
      const int64_t micros = std::min(accumulation, batches_per_epoch - batch);
      // Rows of this optimizer step: each micro-batch's mean loss is weighted by its share.
      const int64_t step_total = std::min(n, (batch + micros) * B) - batch * B;
      double step_loss = 0;
      int64_t step_rows = 0;
      for (int64_t a = 0; a < micros; ++a, ++batch) {
        const int64_t begin = batch * B, end = std::min(n, begin + B);
        const std::vector<int64_t> rows(order.begin() + begin, order.begin() + end);
        std::vector<const TokenIds*> texts;
        for (const int64_t r : rows) texts.push_back(&train.tokens[r]);
        const auto queries = embed(query, texts, tok->pad_id(), folder.pooling);  // [b, D]
        const auto ids = search(dense->index(), queries, trainer.k());
        const auto loss = trainer.loss(train, rows, queries, ids);
        const double value = loss.item<double>();
        KVRAG_CHECK(std::isfinite(value),
                    "train-query-encoder: the loss is {} at step {} (lower --lr?)", value, step);
        (loss * (static_cast<double>(rows.size()) / static_cast<double>(step_total))).backward();
        step_loss += value * static_cast<double>(rows.size());
        step_rows += static_cast<int64_t>(rows.size());
      }
      const double lr = schedule.lr(step);
      optimizer_step(*optimizer, lr, o.optim.clip_norm);
      ++step;
      ++steps_this_run;
      loss_sum += step_loss;
      loss_count += step_rows;
      progress.set_note(fmt::format("epoch {}  loss {:.4f}  lr {:.2e}  LLM scores {}", epoch + 1,
                                    step_loss / static_cast<double>(step_rows), lr,
                                    trainer.llm_scores()));
      progress.update(0, epoch * n + std::min(n, batch * B));
      state["step"] = step;
      state["epoch"] = epoch;
      state["batch"] = batch;
      state["loss_sum"] = loss_sum;
      state["loss_count"] = loss_count;
      if (o.save_every > 0 && step % o.save_every == 0 && batch < batches_per_epoch) {
        state["schedule"] = schedule.state();
        save_resume_point(o.out, *query, *optimizer, state);
      }
      if (o.stop_after_steps > 0 && steps_this_run >= o.stop_after_steps) {
        result.stopped = true;
        result.steps = step;
        result.llm_scores = trainer.llm_scores();
        return result;
      }
    }

    json entry = {{"epoch", epoch},
                  {"loss", loss_count > 0 ? loss_sum / static_cast<double>(loss_count) : 0.0}};
    bool better = true;
    if (!o.dev.empty()) {
      const auto [loss, at] = trainer.validate(query, dev, tok->pad_id(), folder.pooling);
      entry["dev_loss"] = loss;
      entry["dev"] = at.to_json();
      schedule.on_validation(-loss);
      better = state["best_epoch"].get<int64_t>() < 0 || loss < state["best_loss"].get<double>();
      if (better) state["best_loss"] = loss;
    }
    if (better) {
      state["best_epoch"] = epoch;
      export_encoder(query, folder, o.out, passage_rel);
    }
    state["history"].push_back(entry);
    state["epoch"] = epoch + 1;
    state["batch"] = 0;
    state["loss_sum"] = 0.0;
    state["loss_count"] = 0;
    state["schedule"] = schedule.state();
    save_resume_point(o.out, *query, *optimizer, state);
    write_report();
  }
  progress.finish(0, n * o.optim.epochs);

  result.initial_dev_loss = state["initial_dev_loss"].get<double>();
  result.initial_dev = at_from(state["initial_dev"]);
  for (const auto& e : state["history"]) {
    result.epoch_loss.push_back(e["loss"].get<double>());
    if (e.contains("dev_loss")) {
      result.dev_loss.push_back(e["dev_loss"].get<double>());
      result.dev.push_back(at_from(e["dev"]));
    }
  }
  result.best_epoch = state["best_epoch"].get<int>();
  result.steps = step;
  result.llm_scores = trainer.llm_scores();
  write_report();
  return result;
}

}  // namespace kvrag
