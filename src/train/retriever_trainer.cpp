#include "train/retriever_trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <unordered_map>

#include "checkpoint/model_folder.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_excerpt.h"
#include "core/progress.h"
#include "index/segment_store.h"
#include "model/bert.h"
#include "model/layers.h"
#include "model/weights.h"
#include "text/corpus_reader.h"
#include "text/segmenter.h"
#include "text/wordpiece_tokenizer.h"
#include "train/bert_encoder.h"
#include "train/contrastive_loss.h"
#include "train/data_parallel.h"
#include "train/rank_sync.h"
#include "train/train_state.h"

namespace kvrag {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// --- data ---------------------------------------------------------------------------------------

struct Passage {
  std::string id, title, text;
};

struct Passages {
  std::vector<Passage> items;
  std::unordered_map<std::string, int64_t> index;  // doc id → position
};

Passages read_passages(const std::string& path) {
  Passages p;
  CorpusReader reader(path, CorpusFormat::kAuto, /*strict=*/true, /*allow_empty=*/true);
  Document doc;
  while (reader.next(doc)) {
    const bool fresh = p.index.emplace(doc.id, static_cast<int64_t>(p.items.size())).second;
    KVRAG_CHECK(fresh, "passages {}: line {}: duplicate id \"{}\"", path, doc.line, doc.id);
    p.items.push_back({doc.id, doc.title, doc.text});
  }
  KVRAG_CHECK(!p.items.empty(), "passages {}: no passages", path);
  return p;
}

struct LabelledQuestion {
  std::string question;
  int64_t gold = -1;  // passage position
};

// {"question", "gold_passage_id"} lines; every gold id must name a passage.
std::vector<LabelledQuestion> read_labelled_questions(const std::string& path,
                                                      const Passages& passages,
                                                      const std::string& passages_path) {
  std::ifstream in(path);
  KVRAG_CHECK(in.good(), "questions {}: cannot open", path);
  std::vector<LabelledQuestion> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      fail("questions {}: line {}: invalid JSON: {}", path, n, e.what());
    }
    KVRAG_CHECK(j.is_object() && j.contains("question") && j["question"].is_string() &&
                    !j["question"].get<std::string>().empty(),
                "questions {}: line {}: missing or empty \"question\"", path, n);
    KVRAG_CHECK(j.contains("gold_passage_id") &&
                    (j["gold_passage_id"].is_string() || j["gold_passage_id"].is_number_integer()),
                "questions {}: line {}: missing \"gold_passage_id\" (training and validation need "
                "the gold passage)",
                path, n);
    const auto& g = j["gold_passage_id"];
    const std::string gold =
        g.is_string() ? g.get<std::string>() : std::to_string(g.get<int64_t>());
    const auto it = passages.index.find(gold);
    KVRAG_CHECK(it != passages.index.end(),
                "questions {}: line {}: gold_passage_id \"{}\" is not in passages {}", path, n,
                gold, passages_path);
    out.push_back({j["question"].get<std::string>(), it->second});
  }
  KVRAG_CHECK(!out.empty(), "questions {}: no questions", path);
  return out;
}

// What `kvrag segment` + `kvrag embed` feed the encoder for a passage (one window).
std::string passage_input(const Passage& p) {
  Segment s;
  s.title = p.title;
  s.text = p.text;
  return encoder_input(s, /*prepend_title=*/true);
}

// --- the encoders -------------------------------------------------------------------------------

// The trained encoders: "passage" and, if separate, "query" (else query aliases passage).
class DualEncoderImpl : public torch::nn::Module {
 public:
  DualEncoderImpl(BertModel passage_model, BertModel query_model) {
    passage = register_module("passage", std::move(passage_model));
    query = !query_model.is_empty() ? register_module("query", std::move(query_model)) : passage;
  }
  BertModel passage{nullptr}, query{nullptr};
};
TORCH_MODULE(DualEncoder);

// Fraction of dev questions whose gold passage is among the top 5 by inner product.
double top5_accuracy(DualEncoder& model, const std::vector<TokenIds>& questions,
                     const std::vector<int64_t>& gold, const std::vector<TokenIds>& passages,
                     TokenId pad, const std::string& pooling) {
  const auto p = embed_all(model->passage, passages, pad, pooling);  // [N, H]
  const auto q = embed_all(model->query, questions, pad, pooling);   // [Q, H]
  const auto scores = torch::matmul(q, p.t());                       // [Q, N]
  // [Q, k]
  const auto top = std::get<1>(scores.topk(std::min<int64_t>(5, p.size(0)), 1)).contiguous();
  // [Q, 1]
  const auto gold_t = torch::tensor(gold, torch::kInt64).unsqueeze(1);
  return (top == gold_t).any(1).to(torch::kFloat64).mean().item<double>();
}

// --- starting point and export ------------------------------------------------------------------

EncoderFolder resolve_start(const RetrieverTrainOptions& o) {
  std::string dir;
  if (!o.init.empty()) {
    KVRAG_CHECK(o.init_config.empty(), "give either --init or --init-config, not both");
    dir = o.init;
  } else {
    KVRAG_CHECK(!o.init_config.empty() && !o.vocab.empty(),
                "a starting encoder is needed: --init DIR, or --init-config CONFIG.json with "
                "--vocab VOCAB.txt");
    dir = o.out + "/init";
    if (!fs::exists(dir + "/model.safetensors")) {
      create_encoder(dir, BertConfig::load(o.init_config), o.vocab, o.optim.seed, o.init_std);
    }
  }
  return read_encoder_folder(dir, "train-retriever --init");
}

// The options a resumed run must share with the run it continues.
json run_identity(const RetrieverTrainOptions& o) {
  return {{"init", o.init},
          {"init_config", o.init_config},
          {"questions", o.questions},
          {"passages", o.passages},
          {"pretrain_corpus", o.pretrain_corpus},
          {"hard_negatives", o.hard_negatives},
          {"separate_encoders", o.separate_encoders},
          {"loss", o.loss},
          {"max_length", o.max_length},
          {"batch_size", o.optim.batch_size},
          {"accumulation", o.optim.accumulation},
          {"epochs", o.optim.epochs},
          {"seed", o.optim.seed},
          {"schedule", o.optim.schedule}};
}

// One BM25 hard negative per question: the best passage that is not the gold one.
std::vector<int64_t> mine_hard_negatives(const std::vector<LabelledQuestion>& questions,
                                         const Passages& passages, const std::string& work_path) {
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(work_path + suffix);
  std::vector<int64_t> negatives(questions.size(), -1);
  {
    auto store = SegmentStore::open(work_path, /*create=*/true);
    std::vector<Segment> segments;
    for (const auto& p : passages.items) {
      Segment s;
      s.doc_id = p.id;
      s.title = p.title;
      s.text = p.text;
      segments.push_back(std::move(s));
    }
    store->add_segments(segments);
    for (size_t i = 0; i < questions.size(); ++i) {
      for (const auto& hit : store->bm25(questions[i].question, 8)) {
        const int64_t pos = passages.index.at(segments[hit.id].doc_id);
        if (pos != questions[i].gold) {
          negatives[i] = pos;
          break;
        }
      }
      // No lexical match at all: any other passage (deterministic).
      if (negatives[i] < 0)
        negatives[i] = (questions[i].gold + 1) % static_cast<int64_t>(passages.items.size());
    }
  }
  for (const char* suffix : {"", "-wal", "-shm"}) fs::remove(work_path + suffix);
  return negatives;
}

// Contriever's random crop: a span of ratio ∈ [lo, hi] of the tokens, as [CLS] span [SEP].
TokenIds random_crop(const TokenIds& tokens, double lo, double hi, std::mt19937_64& rng,
                     const WordPieceTokenizer& tok, int max_length) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const double ratio = std::uniform_real_distribution<double>(lo, hi)(rng);
  int64_t len = std::clamp<int64_t>(static_cast<int64_t>(std::llround(ratio * n)), 1, n);
  len = std::min<int64_t>(len, max_length - 2);
  const int64_t begin = std::uniform_int_distribution<int64_t>(0, n - len)(rng);
  TokenIds out;
  out.reserve(len + 2);
  out.push_back(tok.cls_id());
  out.insert(out.end(), tokens.begin() + begin, tokens.begin() + begin + len);
  out.push_back(tok.sep_id());
  return out;
}

void validate_options(const RetrieverTrainOptions& o) {
  KVRAG_CHECK(!o.out.empty(), "--out is required");
  o.optim.validate();
  KVRAG_CHECK(o.questions.empty() != o.pretrain_corpus.empty(),
              "give either --questions (supervised) or --pretrain-corpus (cropping pre-training)");
  KVRAG_CHECK(o.questions.empty() || !o.passages.empty(), "--questions needs --passages");
  KVRAG_CHECK(o.dev.empty() || !o.passages.empty(),
              "--dev needs --passages (the passages to rank)");
  KVRAG_CHECK(!o.hard_negatives || !o.questions.empty(),
              "--hard-negatives needs supervised training (--questions)");
  KVRAG_CHECK(o.loss == "infonce" || o.loss == "vicreg",
              "--loss must be infonce or vicreg, not \"{}\"", o.loss);
  KVRAG_CHECK(o.loss != "vicreg" || !o.hard_negatives, "--hard-negatives applies to InfoNCE only");
  KVRAG_CHECK(o.temperature > 0, "--temperature must be positive, got {}", o.temperature);
  KVRAG_CHECK(o.max_length >= 4, "--max-length must be at least 4, got {}", o.max_length);
  KVRAG_CHECK(0 < o.crop_min && o.crop_min <= o.crop_max && o.crop_max <= 1,
              "crop ratios must satisfy 0 < min <= max <= 1, got {} and {}", o.crop_min,
              o.crop_max);
  KVRAG_CHECK(o.optim.schedule != "plateau" || !o.dev.empty(),
              "--schedule plateau needs --dev (it follows dev top-5)");
  KVRAG_CHECK(o.loss != "vicreg" || o.optim.batch_size >= 2,
              "VICReg needs --batch-size of at least 2");
}

}  // namespace

void create_encoder(const std::string& dir, const BertConfig& config, const std::string& vocab_path,
                    uint64_t seed, double std) {
  const auto tok = WordPieceTokenizer::from_vocab_file(vocab_path);
  KVRAG_CHECK(tok->vocab_size() <= config.vocab_size,
              "vocabulary {} has {} tokens but the config's vocab_size is {}", vocab_path,
              tok->vocab_size(), config.vocab_size);
  fs::create_directories(dir);
  BertModel model(config, torch::kFloat32, /*with_pooler=*/false);
  init_parameters(*model, std, seed);
  save_parameters(*model, dir + "/model.safetensors");
  write_file_atomic(dir + "/vocab.txt", read_file(vocab_path));
  auto j = config.to_json();
  j["kvrag_pooling"] = "mean";
  write_file_atomic(dir + "/config.json", j.dump(2) + "\n");
}

RetrieverTrainResult train_retriever(const RetrieverTrainOptions& o) {
  validate_options(o);
  // fp32 training: the products run on BLAS's own threads (layers.h, SerialIntraOpGuard).
  SerialIntraOpGuard serial;
  // Data parallel (train/data_parallel.h): every rank reads the data, sees the same order and
  // computes its slice of each batch; rank 0 alone writes files and talks.
  Communicator& comm = Communicator::world();
  const bool talk = o.progress && comm.is_root();
  fs::create_directories(o.out);
  EncoderFolder start;
  root_first(comm, [&] { start = resolve_start(o); });  // rank 0 creates OUT/init
  const auto tok = load_tokenizer(start);

  // --- data ---
  Passages passages;
  if (!o.passages.empty()) passages = read_passages(o.passages);
  std::vector<TokenIds> passage_ids;  // encoder input of every passage
  for (const auto& p : passages.items)
    passage_ids.push_back(encode_text(*tok, passage_input(p), o.max_length));

  std::vector<TokenIds> train_queries;  // supervised: question tokens
  std::vector<int64_t> train_gold, train_negative;
  std::vector<TokenIds> pretrain_tokens;  // pre-training: passage tokens without specials
  if (!o.questions.empty()) {
    const auto qs = read_labelled_questions(o.questions, passages, o.passages);
    for (const auto& q : qs) {
      train_queries.push_back(encode_text(*tok, q.question, o.max_length));
      train_gold.push_back(q.gold);
    }
    if (o.hard_negatives) {
      // Mined once, on rank 0 (its work file is in OUT).
      train_negative.resize(qs.size());
      if (comm.is_root())
        train_negative = mine_hard_negatives(qs, passages, o.out + "/bm25-negatives.sqlite");
      comm.broadcast(train_negative.data(),
                     static_cast<int64_t>(train_negative.size() * sizeof(int64_t)));
    }
  } else {
    CorpusReader reader(o.pretrain_corpus, CorpusFormat::kAuto, /*strict=*/true,
                        /*allow_empty=*/true);
    Document doc;
    while (reader.next(doc)) {
      TokenIds t = tok->encode(passage_input({doc.id, doc.title, doc.text}), /*add_special=*/false);
      if (!t.empty()) pretrain_tokens.push_back(std::move(t));
    }
    KVRAG_CHECK(!pretrain_tokens.empty(), "pretrain corpus {}: no passages", o.pretrain_corpus);
  }
  std::vector<TokenIds> dev_queries;
  std::vector<int64_t> dev_gold;
  if (!o.dev.empty()) {
    for (const auto& q : read_labelled_questions(o.dev, passages, o.passages)) {
      dev_queries.push_back(encode_text(*tok, q.question, o.max_length));
      dev_gold.push_back(q.gold);
    }
  }

  // --- model and optimiser ---
  auto load = [&] { return load_trainable_bert(start, *tok); };
  DualEncoder model(load(), o.separate_encoders ? load() : BertModel(nullptr));
  auto optimizer = make_adamw(*model, o.optim);

  const int64_t n =
      static_cast<int64_t>(o.questions.empty() ? pretrain_tokens.size() : train_queries.size());
  const int64_t B = std::min<int64_t>(o.optim.batch_size, n);
  KVRAG_CHECK(o.loss != "vicreg" || B >= 2, "VICReg needs at least 2 training examples");
  KVRAG_CHECK(B >= comm.size(), "a batch of {} examples cannot be shared by {} processes", B,
              comm.size());
  const auto [row_begin, row_end] = rank_slice(B, comm.rank(), comm.size());  // this rank's rows
  const auto params = trainable_parameters(*model);
  const int64_t batches_per_epoch = n / B;  // the remainder is dropped (order changes each epoch)
  const int64_t A = o.optim.accumulation;
  const int64_t steps_per_epoch = (batches_per_epoch + A - 1) / A;
  LrSchedule schedule(o.optim, steps_per_epoch * o.optim.epochs);

  RetrieverTrainResult result;
  json state;
  const json identity = run_identity(o);
  int64_t step = 0, epoch = 0, batch = 0;
  double best = -1;
  json history = json::array();
  if (load_resume_point_on_ranks(o.out, *model, *optimizer, &state, comm)) {
    const json& saved = state.at("identity");
    for (const auto& [key, value] : identity.items()) {
      KVRAG_CHECK(
          saved.contains(key) && saved[key] == value,
          "{} holds a run with {} = {}, this one has {}: use another --out, or the same options",
          o.out, key, saved.contains(key) ? json_excerpt(saved[key]) : "(none)",
          json_excerpt(value));
    }
    step = state.at("step").get<int64_t>();
    epoch = state.at("epoch").get<int64_t>();
    batch = state.at("batch").get<int64_t>();
    best = state.at("best").get<double>();
    result.best_epoch = state.at("best_epoch").get<int>();
    result.initial_dev_top5 = state.at("initial_dev_top5").get<double>();
    history = state.at("history");
    schedule.load_state(state.at("schedule"));
    result.resumed = true;
  } else if (!dev_queries.empty()) {
    if (comm.is_root())  // validation on rank 0, the others wait
      result.initial_dev_top5 =
          top5_accuracy(model, dev_queries, dev_gold, passage_ids, tok->pad_id(), start.pooling);
    comm.broadcast(&result.initial_dev_top5);
    if (talk)
      fmt::print(stderr, "train-retriever: dev top-5 before training {:.4f}\n",
                 result.initial_dev_top5);
  }

  auto report = [&] {
    if (!comm.is_root()) return;
    json r = {{"initial_dev_top5", result.initial_dev_top5},
              {"epochs", history},
              {"best_epoch", result.best_epoch},
              {"best_dev_top5", best},
              {"steps", step},
              {"options", identity}};
    write_file_atomic(o.out + "/train_report.json", r.dump(2) + "\n");
  };
  // The resume point: where the next step starts, and everything the rest of the run needs.
  auto save_state = [&](int64_t at_epoch, int64_t at_batch, double loss_sum, int64_t loss_count) {
    json s = {{"step", step},
              {"epoch", at_epoch},
              {"batch", at_batch},
              {"best", best},
              {"best_epoch", result.best_epoch},
              {"initial_dev_top5", result.initial_dev_top5},
              {"history", history},
              {"schedule", schedule.state()},
              {"identity", identity},
              {"epoch_loss_sum", loss_sum},
              {"epoch_loss_count", loss_count}};
    save_resume_point_on_ranks(o.out, *model, *optimizer, s, comm);
  };

  ProgressOptions progress_options;
  progress_options.label = "train-retriever";
  progress_options.unit = "examples";
  progress_options.total_items = o.optim.epochs * batches_per_epoch * B;
  progress_options.start_items = (epoch * batches_per_epoch + batch) * B;
  progress_options.enabled = talk;
  ProgressReporter progress(progress_options);

  const VicRegCoefficients vicreg{o.vicreg_invariance, o.vicreg_variance, o.vicreg_covariance};
  const auto t0 = std::chrono::steady_clock::now();
  int64_t steps_this_run = 0;

  for (; epoch < o.optim.epochs; ++epoch) {
    const auto order = epoch_order(n, o.optim.seed, epoch);
    // Mean loss of the epoch so far (a resumed run continues the interrupted epoch's sums).
    double loss_sum = batch > 0 ? state.value("epoch_loss_sum", 0.0) : 0.0;
    int64_t loss_count = batch > 0 ? state.value("epoch_loss_count", int64_t{0}) : 0;
    while (batch < batches_per_epoch) {
      // One optimizer step over up to A micro-batches.
      const int64_t group = std::min<int64_t>(A, batches_per_epoch - batch);
      double step_loss = 0;
      for (int64_t g = 0; g < group; ++g, ++batch) {
        // This rank embeds rows [row_begin, row_end) of the batch (all of it in one process);
        // the exclusion mask needs every row's passage identity.
        std::vector<TokenIds> crops;  // pre-training views (kept alive for the batch)
        std::vector<const TokenIds*> queries, docs;
        std::vector<int64_t> doc_pos;  // passage identity of each batch row (exclusion mask)
        for (int64_t r = 0; r < B; ++r) {
          const int64_t i = order[batch * B + r];
          doc_pos.push_back(o.questions.empty() ? i : train_gold[i]);
          if (r < row_begin || r >= row_end) continue;
          if (!o.questions.empty()) {
            queries.push_back(&train_queries[i]);
            docs.push_back(&passage_ids[train_gold[i]]);
          } else {
            // The crops of example i in epoch e depend on (seed, epoch, i) only: resumable.
            std::mt19937_64 rng((o.optim.seed + 1) * 0x9E3779B97F4A7C15ULL ^
                                (static_cast<uint64_t>(epoch) << 32) ^ static_cast<uint64_t>(i));
            crops.push_back(
                random_crop(pretrain_tokens[i], o.crop_min, o.crop_max, rng, *tok, o.max_length));
            crops.push_back(
                random_crop(pretrain_tokens[i], o.crop_min, o.crop_max, rng, *tok, o.max_length));
          }
        }
        const int64_t b = row_end - row_begin;
        if (o.questions.empty()) {
          for (int64_t r = 0; r < b; ++r) {
            queries.push_back(&crops[2 * r]);
            docs.push_back(&crops[2 * r + 1]);
          }
        }
        if (!train_negative.empty()) {
          for (int64_t r = 0; r < B; ++r) {
            const int64_t neg = train_negative[order[batch * B + r]];
            if (r >= row_begin && r < row_end) docs.push_back(&passage_ids[neg]);
            doc_pos.push_back(neg);
          }
        }
        auto q = embed(model->query, queries, tok->pad_id(), start.pooling);  // [b, H]
        auto p = embed(model->passage, docs, tok->pad_id(), start.pooling);   // [b or 2b, H]
        if (comm.distributed()) {
          // Every rank's embeddings (DPR's and Contriever's cross-device negatives): the loss is
          // the whole batch's on every rank, and its gradient reaches this rank's rows.
          q = gather_rows(q, B, comm);  // [B, H]
          p = train_negative.empty()
                  ? gather_rows(p, B, comm)
                  : torch::cat({gather_rows(p.narrow(0, 0, b), B, comm),
                                gather_rows(p.narrow(0, b, b), B, comm)});  // [B or 2B, H]
        }
        const int64_t D = static_cast<int64_t>(doc_pos.size());
        torch::Tensor loss;
        if (o.loss == "vicreg") {
          loss = vicreg_loss(q, p, vicreg).loss;
        } else {
          // A passage that is q[i]'s own positive elsewhere in the batch is not a negative.
          auto exclude = torch::zeros({B, D}, torch::kBool);
          auto* ex = exclude.data_ptr<bool>();
          for (int64_t r = 0; r < B; ++r) {
            for (int64_t c = 0; c < D; ++c) ex[r * D + c] = c != r && doc_pos[c] == doc_pos[r];
          }
          loss = info_nce_loss(q, p, o.temperature, o.normalize, exclude);
        }
        (loss / static_cast<double>(group)).backward();
        const double value = loss.item<double>();
        KVRAG_CHECK(std::isfinite(value), "training diverged: loss {} at step {} (lower --lr?)",
                    value, step);
        step_loss += value / group;
      }
      allreduce_gradients(params, comm);  // the whole batch's gradient on every rank
      const double lr = schedule.lr(step);
      optimizer_step(*optimizer, lr, o.optim.clip_norm);
      ++step;
      ++steps_this_run;
      loss_sum += step_loss;
      ++loss_count;
      result.examples += group * B;
      progress.set_note(fmt::format("epoch {}/{}  loss {:.4f}  lr {:.2e}", epoch + 1,
                                    o.optim.epochs, step_loss, lr));
      progress.update(0, (epoch * batches_per_epoch + batch) * B);

      if (o.stop_after_steps > 0 && steps_this_run >= o.stop_after_steps) {
        // as a kill right after a save would leave it
        save_state(epoch, batch, loss_sum, loss_count);
        result.steps = step;
        return result;
      }
      if (o.save_every > 0 && step % o.save_every == 0 && batch < batches_per_epoch) {
        save_state(epoch, batch, loss_sum, loss_count);
      }
    }

    // End of the epoch: validate, keep the best, checkpoint.
    json entry = {
        {"epoch", epoch}, {"loss", loss_count > 0 ? loss_sum / loss_count : 0.0}, {"steps", step}};
    bool improved = true;  // without dev: the latest epoch is exported
    if (!dev_queries.empty()) {
      double top5 = 0;  // on rank 0, the others wait
      if (comm.is_root())
        top5 =
            top5_accuracy(model, dev_queries, dev_gold, passage_ids, tok->pad_id(), start.pooling);
      comm.broadcast(&top5);
      entry["dev_top5"] = top5;
      improved = top5 > best;
      schedule.on_validation(top5);
      if (improved) best = top5;
    }
    if (improved) {
      result.best_epoch = static_cast<int>(epoch);
      if (comm.is_root()) {
        export_encoder(model->passage, start, o.out);
        if (o.separate_encoders) export_encoder(model->query, start, o.out + "/query", "..");
      }
    }
    history.push_back(entry);
    progress.break_line();
    if (talk) {
      fmt::print(stderr, "train-retriever: epoch {}/{}: loss {:.4f}{}{}\n", epoch + 1,
                 o.optim.epochs, entry["loss"].get<double>(),
                 entry.contains("dev_top5")
                     ? fmt::format(", dev top-5 {:.4f}", entry["dev_top5"].get<double>())
                     : "",
                 improved ? " (saved)" : "");
    }
    batch = 0;
    report();
    // The resume point names the next epoch, so a rerun after this one does not redo it.
    save_state(epoch + 1, 0, 0.0, 0);
  }
  progress.finish(0, o.optim.epochs * batches_per_epoch * B);

  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  result.examples_per_s = seconds > 0 ? result.examples / seconds : 0;
  result.steps = step;
  result.best_dev_top5 = best;
  for (const auto& e : history) {
    result.epoch_loss.push_back(e["loss"].get<double>());
    if (e.contains("dev_top5")) result.dev_top5.push_back(e["dev_top5"].get<double>());
  }
  // Every rank's parameter fingerprint (they must agree; check_ranks_agree fails otherwise).
  const auto fingerprints = check_ranks_agree(*model, comm, o.out);
  if (!history.empty() && comm.is_root()) {
    json r = json::parse(read_file(o.out + "/train_report.json"));
    if (steps_this_run > 0) r["examples_per_s"] = result.examples_per_s;
    r["data_parallel"] = {{"ranks", comm.size()}, {"parameter_fingerprints", fingerprints}};
    write_file_atomic(o.out + "/train_report.json", r.dump(2) + "\n");
  }
  result.finished = true;
  return result;
}

}  // namespace kvrag
