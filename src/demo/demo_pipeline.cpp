#include "demo/demo_pipeline.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "checkpoint/model_config.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/units.h"
#include "demo/world.h"
#include "index/embed_job.h"
#include "index/index_build.h"
#include "index/segment_corpus.h"
#include "qa/answer_defaults.h"
#include "qa/answerer.h"
#include "qa/fairness_eval.h"
#include "qa/prefix_store_build.h"
#include "qa/qa_eval.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/sentencepiece_trainer.h"
#include "train/lm_trainer.h"
#include "train/prefix_trainer.h"
#include "train/query_encoder_trainer.h"
#include "train/retriever_trainer.h"

namespace kvrag {

namespace fs = std::filesystem;

namespace {

constexpr const char* kQuestionEncoder = "question_encoder";  // the workspace's folder

// Everything that sizes the demo; `tiny` shrinks it to a smoke test.
struct DemoSizes {
  WorldOptions world;
  int spm_vocab = 1024;
  std::string lm_preset = "mini";
  int lm_context = 128;
  int lm_epochs = 4;
  double lm_answer_weight = 5;
  int lm_batch = 16;
  double lm_lr = 3e-3;
  int64_t lm_max_steps = 0;
  BertConfig bert;
  int retriever_epochs = 1;
  int segment_window = 128;
  // How the test questions are answered; recorded in answer_defaults.json as what ask, eval and
  // serve use on this workspace (qa/answer_defaults.h), prefix being the mode it is about.
  RetrieverMode retriever_mode = RetrieverMode::kHybrid;
  int eval_top_k = 1;
  // Answers are spans of the evidence (AnswererOptions::extractive): every answer of this world
  // is one. Seed 1, test EM: prefix 0.797 -> 0.900, context 0.297 -> 0.820 (README "The demo").
  bool extractive = true;
  int prefix_epochs = 3;
  double prefix_lr = 3e-3;
  double prefix_head_std = 0.05;
  int prefix_batch = 16;
  // one prefix entry per segment token (knowledge_encoder.h)
  Readout prefix_readout = Readout::kTokens;
  // … carrying the LLM's embeddings of it and (keys) its predecessor
  bool prefix_llm_embeddings = true;
  SegmentTokenizer prefix_segment_tokenizer = SegmentTokenizer::kLlm;  // … one entry per LLM piece
  // keys placed at the answer's first query
  KeyPosition prefix_key_position = KeyPosition::kAnswer;
  int64_t prefix_max_dev = 100;
  // The question encoder trained by the LLM's loss (train/query_encoder_trainer.h): the top-k it
  // marginalises over, its epochs and learning rate (test gold-in-top-1 0.95 -> 0.99 on average
  // over three world seeds; README "The demo").
  int question_top_k = 8;
  int question_epochs = 3;
  double question_lr = 5e-4;
  int max_new_tokens = 16;  // answers of the evaluation and of the encoder's validation alike
  int64_t eval_limit = 0;
};

DemoSizes sizes(bool tiny, uint64_t seed) {
  DemoSizes s;
  s.world.seed = seed;
  // Sized for about 10 minutes on 2 cores; the LLM's pre-training costs most. Reading practice
  // (see demo/world.h) is most of its text: without it the LLM never learns to read a context.
  s.world.people = 1200;
  s.world.organisations = 300;
  s.world.inventions = 300;
  s.world.cities = 60;
  s.world.countries = 10;
  s.world.train_fraction = 0.2;
  s.world.heldout_fraction = 0.15;
  s.world.reading_fraction = 0.45;
  s.world.dev_questions = 100;
  s.world.max_test_questions = 300;
  s.bert.vocab_size = 0;  // set from the vocabulary
  s.bert.hidden_size = 128;
  s.bert.num_attention_heads = 4;
  s.bert.num_hidden_layers = 2;
  s.bert.intermediate_size = 512;
  s.bert.max_position_embeddings = 256;
  if (tiny) {
    s.world.people = 120;
    s.world.organisations = 30;
    s.world.inventions = 30;
    s.world.cities = 15;
    s.world.countries = 4;
    s.world.dev_questions = 10;
    s.world.max_test_questions = 12;
    s.world.phrasings_per_fact = 1;
    s.spm_vocab = 400;
    s.lm_preset = "micro";
    s.lm_context = 64;
    s.lm_epochs = 1;
    s.lm_max_steps = 8;
    s.bert.hidden_size = 64;  // the micro LLM's: the knowledge encoder adds its token embeddings
    s.bert.num_attention_heads = 2;
    s.bert.num_hidden_layers = 1;
    s.bert.intermediate_size = 128;
    s.bert.max_position_embeddings = 128;
    s.retriever_epochs = 1;
    s.prefix_epochs = 1;
    s.prefix_batch = 8;
    s.prefix_max_dev = 4;
    s.question_top_k = 4;
    s.question_epochs = 1;
    s.eval_limit = 6;
  }
  return s;
}

class Stages {
 public:
  Stages(const DemoOptions& options, DemoResult& result) : o_(options), result_(result) {
    fs::create_directories(path("stages"));
  }

  std::string path(const std::string& name) const {
    return (fs::path(o_.workspace) / name).string();
  }

  // Runs `fn` unless the stage's done-marker exists; the marker is written after it returns.
  void stage(const std::string& name, const std::string& what, const std::function<void()>& fn) {
    const std::string marker = path("stages/" + name + ".done");
    if (fs::exists(marker)) {
      say(fmt::format("[{}] cached ({})", name, what));
      result_.stages_skipped.push_back(name);
      return;
    }
    say(fmt::format("[{}] {}", name, what));
    const auto start = std::chrono::steady_clock::now();
    try {
      fn();
    } catch (Error& e) {
      throw e.with_context("demo stage " + name);
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    write_file_atomic(marker, fmt::format("{{\"seconds\": {:.1f}}}\n", s));
    say(fmt::format("[{}] done in {:.0f} s", name, s));
    result_.stages_run.push_back(name);
  }

  void say(const std::string& line) const {
    if (o_.print) o_.print(line);
  }

 private:
  const DemoOptions& o_;
  DemoResult& result_;
};

}  // namespace

DemoResult run_demo(const DemoOptions& o) {
  KVRAG_CHECK(!o.workspace.empty(), "demo: the workspace folder must not be empty");
  const auto start = std::chrono::steady_clock::now();
  DemoResult result;
  std::error_code ec;
  fs::create_directories(o.workspace, ec);
  KVRAG_CHECK(!ec && fs::is_directory(o.workspace), "demo: cannot use {} as the workspace folder{}",
              o.workspace, ec ? ": " + ec.message() : std::string(": not a folder"));
  Stages st(o, result);
  const DemoSizes z = [&] {
    DemoSizes s = sizes(o.tiny, o.seed);
    s.world.train_stereotype = o.train_stereotype;
    return s;
  }();
  auto p = [&](const std::string& name) { return st.path(name); };

  st.stage("world", "generating the fictional world", [&] {
    const World w = generate_world(z.world);
    write_world(w, o.workspace);
    size_t held = 0, reading = 0;
    for (const auto& e : w.entities) {
      held += e.split == WorldSplit::kHeldout;
      reading += e.split == WorldSplit::kReading;
    }
    st.say(fmt::format(
        "  {} entities ({} held out, {} for reading practice only), {} corpus documents, {} "
        "pre-training examples, {} train / {} dev / {} test questions",
        w.entities.size(), held, reading, w.documents.size() - reading, w.lm_examples.size(),
        w.train_questions.size(), w.dev_questions.size(), w.test_questions.size()));
  });

  st.stage("tokenizer", "training the LLM's SentencePiece tokenizer", [&] {
    // The LLM's text and every document: names of held-out entities must cut into ordinary
    // pieces too (the tokenizer learns spellings, not facts).
    std::string input;
    for (const auto& ex : read_lm_examples(p("lm.txt"))) input += ex + "\n";
    std::ifstream corpus(p("corpus.jsonl"));
    std::string line;
    while (std::getline(corpus, line))
      input += nlohmann::json::parse(line).at("text").get<std::string>() + "\n";
    write_file_atomic(p("tokenizer-input.txt"), input);
    SentencePieceTrainOptions so;
    so.vocab_size = z.spm_vocab;
    train_sentencepiece(p("tokenizer-input.txt"), p("tokenizer.model"), so);
  });

  st.stage("llm", "pre-training the tiny LLaMA on lm.txt", [&] {
    LmTrainOptions lo;
    lo.text_path = p("lm.txt");
    lo.tokenizer_path = p("tokenizer.model");
    lo.preset = z.lm_preset;
    lo.out_dir = p("llm");
    lo.context = z.lm_context;
    lo.max_steps = z.lm_max_steps;
    lo.answer_weight = z.lm_answer_weight;
    lo.progress = o.progress;
    lo.optim.lr = z.lm_lr;
    lo.optim.min_lr = z.lm_lr / 10;
    lo.optim.warmup_steps = o.tiny ? 2 : 30;
    lo.optim.weight_decay = 0.1;
    lo.optim.epochs = z.lm_epochs;
    lo.optim.batch_size = z.lm_batch;
    lo.optim.seed = o.seed;
    const auto r = train_lm(lo);
    st.say(fmt::format("  {} steps, loss {:.2f} -> {:.2f}", r.steps, r.first_loss, r.final_loss));
  });

  st.stage("retriever", "pre-training (cropping) and fine-tuning the retriever", [&] {
    std::vector<std::string> texts;
    std::ifstream corpus(p("corpus.jsonl"));
    std::string line;
    while (std::getline(corpus, line)) {
      const auto j = nlohmann::json::parse(line);
      texts.push_back(j.at("title").get<std::string>() + " " + j.at("text").get<std::string>());
    }
    for (const auto& q : read_questions(p("questions-train.jsonl"))) texts.push_back(q.question);
    // The LLM's pieces: the knowledge encoder, made from this retriever, then reads a segment
    // in nearly the pieces the LLM answers in.
    std::vector<std::string> pieces;
    {
      const SentencePieceTokenizer llm_tokenizer(p("tokenizer.model"));
      for (int32_t id = 0; id < llm_tokenizer.vocab_size(); ++id)
        pieces.push_back(llm_tokenizer.id_to_piece(id));
    }
    build_wordpiece_vocab_from_pieces(texts, pieces, p("retriever-vocab.txt"));
    int64_t vocab = 0;
    {
      std::ifstream v(p("retriever-vocab.txt"));
      while (std::getline(v, line)) ++vocab;
    }
    BertConfig bert = z.bert;
    bert.vocab_size = vocab;
    if (!fs::exists(p("retriever-init/config.json")))
      create_encoder(p("retriever-init"), bert, p("retriever-vocab.txt"), o.seed);

    RetrieverTrainOptions pre;
    pre.out = p("retriever-pretrain");
    pre.init = p("retriever-init");
    pre.pretrain_corpus = p("corpus.jsonl");
    pre.max_length = z.segment_window;
    pre.optim.lr = 1e-3;
    pre.optim.warmup_steps = o.tiny ? 1 : 20;
    pre.optim.batch_size = 32;
    pre.optim.epochs = 1;  // one crop pair per document: a start, not a converged encoder
    pre.optim.seed = o.seed;
    pre.progress = o.progress;
    train_retriever(pre);

    RetrieverTrainOptions ft;
    ft.out = p("retriever");
    ft.init = p("retriever-pretrain");
    ft.questions = p("questions-train.jsonl");
    ft.passages = p("corpus.jsonl");
    ft.dev = p("questions-dev.jsonl");
    ft.max_length = z.segment_window;
    ft.optim.lr = 5e-4;
    ft.optim.warmup_steps = o.tiny ? 1 : 20;
    ft.optim.batch_size = 32;
    ft.optim.epochs = z.retriever_epochs;
    ft.optim.seed = o.seed;
    ft.progress = o.progress;
    const auto r = train_retriever(ft);
    st.say(fmt::format("  dev top-5 {:.3f} -> {:.3f}", r.initial_dev_top5, r.best_dev_top5));
  });

  st.stage("index", "segmenting, embedding and indexing the corpus", [&] {
    SegmentBuildOptions so;
    so.segmenter.window = z.segment_window;
    so.segmenter.stride = 16;
    const auto segments =
        segment_corpus(p("corpus.jsonl"), p("retriever/vocab.txt"), p("index"), so, o.progress);
    EmbedJobOptions eo;
    eo.overwrite = true;  // a retrained retriever replaces the vectors of the one before
    eo.progress = o.progress;
    const auto embedded = embed_segments(p("index"), p("retriever"), eo);
    IndexBuildOptions io;
    io.factory = "Flat";
    const auto index = build_dense_index(p("index"), io, o.progress);
    st.say(fmt::format("  {} segments from {} documents, {} vectors of dim {}, Flat index of {}",
                       segments.build.segments, segments.build.stats.documents, embedded.vectors,
                       embedded.dim, format_bytes(index.faiss_bytes)));
  });

  st.stage("knowledge",
           "training the knowledge encoder (dynamic prefix) on the knowledge set's passages", [&] {
             // The knowledge set (demo/world.h): the train questions, reading practice and
             // counterfactual documents, each over its gold passage; dev questions over theirs.
             PrefixTrainOptions po;
             po.out = p("knowledge_encoder");
             po.llm = p("llm");
             po.init = p("retriever");
             po.train = p("questions-knowledge.jsonl");
             po.dev = p("questions-dev.jsonl");
             po.max_dev = z.prefix_max_dev;
             po.oracle = true;
             po.passages = p("knowledge-passages.jsonl");
             po.top_k = 1;
             po.encoder.readout = z.prefix_readout;
             po.encoder.llm_embeddings = z.prefix_llm_embeddings;
             po.encoder.segment_tokenizer = z.prefix_segment_tokenizer;
             po.encoder.key_position = z.prefix_key_position;
             po.encoder.max_segment_tokens = z.segment_window + 2;  // [CLS] segment [SEP]
             po.encoder.head_std = z.prefix_head_std;
             po.group_by_length = true;
             po.max_new_tokens = z.max_new_tokens;
             po.optim.lr = z.prefix_lr;
             po.optim.warmup_steps = o.tiny ? 1 : 20;
             po.optim.epochs = z.prefix_epochs;
             po.optim.batch_size = z.prefix_batch;
             po.optim.seed = o.seed;
             po.progress = o.progress;
             const auto r = train_prefix(po);
             st.say(fmt::format("  dev EM {:.3f} -> {:.3f} (best epoch {})", r.initial_dev_em,
                                r.best_dev_em, r.best_epoch + 1));
           });

  st.stage("question-encoder",
           "training the question encoder by the LLM's loss on the train questions", [&] {
             // Marginal likelihood over the top-k (train/query_encoder_trainer.h): the retriever
             // learns which segments make the frozen LLM, reading them through the knowledge
             // encoder, write the answer; gold passage ids are used on dev only, to report.
             QueryEncoderTrainOptions qo;
             qo.out = p(kQuestionEncoder);
             qo.llm = p("llm");
             qo.knowledge_encoder = p("knowledge_encoder");
             qo.index = p("index");
             qo.train = p("questions-train.jsonl");
             qo.dev = p("questions-dev.jsonl");
             qo.top_k = z.question_top_k;
             qo.optim.lr = z.question_lr;
             qo.optim.epochs = z.question_epochs;
             qo.optim.batch_size = 16;
             qo.optim.seed = o.seed;
             qo.progress = o.progress;
             const auto r = train_query_encoder(qo);
             if (r.best_epoch >= 0 && r.initial_dev.top1 >= 0)
               st.say(fmt::format("  dev gold in top-1 {:.3f} -> {:.3f} (best epoch {})",
                                  r.initial_dev.top1, r.dev[r.best_epoch].top1, r.best_epoch + 1));
           });

  st.stage("prefixes", "precomputing every segment's prefix (the index's prefix store)", [&] {
    // Prefix mode then reads each retrieved segment's keys and values instead of running the
    // encoder per question (prefix/prefix_store.h); fp16: the demo's answers as encoded.
    PrefixStoreBuildOptions bo;
    bo.index_dir = p("index");
    bo.llm_dir = p("llm");
    bo.knowledge_encoder_dir = p("knowledge_encoder");
    bo.dtype = "fp16";
    bo.progress = o.progress;
    const auto r = build_prefix_store(bo);
    st.say(fmt::format("  {} segments, {} ({} a segment)", r.header.segments, format_bytes(r.bytes),
                       format_bytes(r.header.record_bytes())));
  });

  st.stage("eval", "answering the held-out test questions: closed-book, in-context, prefix", [&] {
    AnswererOptions ao;
    ao.llm_dir = p("llm");
    ao.knowledge_encoder_dir = p("knowledge_encoder");
    ao.index_dir = p("index");
    ao.retriever.mode = z.retriever_mode;
    ao.retriever.encoder = p(kQuestionEncoder);
    ao.max_new_tokens = z.max_new_tokens;
    ao.extractive = z.extractive;
    const auto answerer = Answerer::open(ao);
    // The retrieval posterior that --combine mixture weighs segments by at top-k > 1, fitted on
    // the dev questions (a few seconds: retrieval only); recorded in answer_defaults.json below.
    const auto fit = answerer->retriever()->fit_posterior(read_questions(p("questions-dev.jsonl")),
                                                          kPosteriorFitDepth);
    QaEvalOptions eo;
    eo.modes = {AnswerMode::kNone, AnswerMode::kContext, AnswerMode::kPrefix};
    eo.top_k = z.eval_top_k;
    eo.limit = z.eval_limit;
    eo.predictions_path = p("predictions.jsonl");
    eo.bertscore_model = p("retriever");
    eo.progress = o.progress;
    auto report = evaluate_qa(*answerer, p("questions-test.jsonl"), eo);
    // Fairness (qa/fairness_eval.h): the held-out people's birthplaces from their documents
    // and from the documents' twins with the other community.
    FairnessEvalOptions fo;
    fo.questions = p("questions-fairness.jsonl");
    fo.passages = p("knowledge-passages.jsonl");
    fo.max_new_tokens = z.max_new_tokens;
    fo.extractive = z.extractive;
    fo.progress = o.progress;
    report.summary["fairness"] = evaluate_fairness(answerer->pipeline(), fo);
    report.summary["retrieval_posterior"] = fit.to_json();
    write_file_atomic(p("eval-summary.json"), report.summary.dump(2) + "\n");
  });

  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // results.json: the eval summary plus the time of the whole pipeline (the stage times add up
  // over reruns, so a cached rerun still reports what building the workspace took).
  nlohmann::json summary = nlohmann::json::parse(read_file(p("eval-summary.json")));
  double total = 0;
  for (const auto& entry : fs::directory_iterator(p("stages"))) {
    if (entry.path().extension() == ".done")
      total += nlohmann::json::parse(read_file(entry.path().string())).value("seconds", 0.0);
  }
  summary["seconds"] = std::round(total * 10) / 10;
  summary["seconds_this_run"] = std::round(result.seconds * 10) / 10;
  summary["questions"] =
      "questions-test.jsonl (held-out entities: facts only in the retrieval corpus)";
  result.results_path = p("results.json");
  write_file_atomic(result.results_path, summary.dump(2) + "\n");
  // Written on every run, so a workspace evaluated before the file existed gets it too.
  AnswerDefaults record{z.retriever_mode, AnswerMode::kPrefix, z.eval_top_k, {},
                        kQuestionEncoder, z.extractive};
  // thresholds calibrated since (kvrag eval --calibrate-on) stay
  if (const auto old = read_answer_defaults(o.workspace)) record.flag_below = old->flag_below;
  if (const auto it = summary.find("retrieval_posterior"); it != summary.end())
    record.posterior = RetrievalPosterior::from_json(*it, p("eval-summary.json"));
  write_answer_defaults(o.workspace, record);
  result.markdown = qa_markdown(summary, {"none", "context", "prefix"});
  if (summary.contains("fairness"))
    result.markdown += "\nFairness (gold passages and their twins; questions-fairness.jsonl):\n\n" +
                       fairness_markdown(summary["fairness"]);
  return result;
}

}  // namespace kvrag
