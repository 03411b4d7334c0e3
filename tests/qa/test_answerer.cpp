// The Answerer and `kvrag ask` / `kvrag eval` end to end on tiny models: stories260K (a real
// LLaMA with its SentencePiece tokenizer) as the LLM, the synthetic corpus and random-weight BERT
// of tests/retrieval for the index, and a freshly initialised knowledge encoder for the prefix
// modes. Likelihoods are checked against a manual computation with the model and qa/prompt.h.

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "core/atomic_file.h"
#include "core/error.h"
#include "model/knowledge_encoder.h"
#include "model/llama.h"
#include "prefix/prompt.h"
#include "qa/answer_defaults.h"
#include "qa/answerer.h"
#include "qa/qa_eval.h"
#include "support/cli_runner.h"
#include "support/retrieval_fixture.h"
#include "support/test_support.h"
#include "support/tiny_models.h"
#include "support/tiny_qa_world.h"
#include "text/knowledge_tokenizer.h"
#include "text/segmenter.h"
#include "text/tokenizer.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::contains;
using test::run_kvrag;

// Options of a knowledge encoder with P learned queries.
KnowledgeEncoderOptions queries(int64_t P) {
  KnowledgeEncoderOptions o;
  o.prefix_length = P;
  return o;
}

using test::TinyQuestion;

class AnswererTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string shared = test::shared_dir();
    if (shared.empty() || !fs::exists(shared + "/models/stories260K/tokenizer.model")) return;
    llm_ = new std::string(shared + "/models/stories260K");
    root_ = new test::TempDir();
    const auto r = test::write_tiny_qa_world(root_->path(), 6, /*gold=*/true, {"zzz"}, questions_);
    ASSERT_EQ(r.exit_code, 0) << r.err;

    // A fresh knowledge encoder for stories260K over the tiny BERT; output heads large enough
    // that the prefix visibly changes the LLM's predictions.
    test::write_fresh_knowledge_encoder(root_->path(), *llm_, "ke", queries(4), 7);
    const auto llm_config = LlamaConfig::load(*llm_ + "/config.json");
    const auto bert_config = BertConfig::load(*root_ / "encoder/config.json");

    // One that reads the segment in the LLM's pieces with their LLM embeddings (the encoder's
    // hidden size is then the LLM's: a random BERT of 64) and places its keys at the answer.
    BertConfig wide = bert_config;
    wide.hidden_size = llm_config.hidden_size;
    const auto config = KnowledgeEncoderConfig::for_llm(wide, llm_config, llm_fingerprint(*llm_),
                                                        test::piece_encoder_options(40));
    KnowledgeEncoder pieces(config, torch::kFloat32);
    pieces->init_fresh(8, 0.3);
    {
      torch::NoGradGuard no_grad;
      const auto llm = load_llama(*llm_);
      pieces->llm_embeddings.narrow(0, 0, llm_config.vocab_size)
          .copy_(llm_embedding_table(llm->model->embed_tokens->weight));
      init_induction_keys(*pieces, *llm);
    }
    save_knowledge_encoder(*pieces, *root_ / "ke-pieces", *root_ / "encoder/vocab.txt");
  }
  static void TearDownTestSuite() {
    delete root_;
    delete llm_;
    root_ = nullptr;
    llm_ = nullptr;
  }
  void SetUp() override {
    if (llm_ == nullptr) GTEST_SKIP() << "shared material not found (models/stories260K)";
  }

  static AnswererOptions options(const std::string& retriever = "bm25") {
    AnswererOptions o;
    o.llm_dir = *llm_;
    o.index_dir = *root_ / "index";
    o.retriever.mode = parse_enum<RetrieverMode>(retriever);
    o.knowledge_encoder_dir = *root_ / "ke";
    o.max_new_tokens = 12;
    return o;
  }

  // Mean log-probability per token of `answer` (prompt.h's target + EOS) after `prompt`, with an
  // optional prefix, computed directly with the model.
  static double manual_logprob(const std::string& prompt, const std::string& answer,
                               const KVPrefix* prefix = nullptr) {
    static LlamaForCausalLM llm = load_llama(*llm_);
    static auto tok = load_tokenizer(*llm_);
    torch::NoGradGuard no_grad;
    std::vector<int64_t> ids, target;
    for (auto id : tok->encode(prompt, true)) ids.push_back(id);
    for (auto id : answer_token_ids(*tok, answer)) target.push_back(id);
    target.push_back(llm->config().eos_token_ids.at(0));
    const int64_t np = static_cast<int64_t>(ids.size());
    ids.insert(ids.end(), target.begin(), target.end());
    LlamaForwardArgs args;
    args.prefix = prefix;
    // [T, V]
    const auto logp =
        torch::log_softmax(llm->forward(torch::tensor(ids).unsqueeze(0), args)[0], -1);
    double sum = 0;
    for (size_t j = 0; j < target.size(); ++j) sum += logp[np + j - 1][target[j]].item<double>();
    return sum / static_cast<double>(target.size());
  }

  static test::TempDir* root_;
  static std::string* llm_;
  static std::vector<TinyQuestion>* questions_;
};
test::TempDir* AnswererTest::root_ = nullptr;
std::string* AnswererTest::llm_ = nullptr;
std::vector<TinyQuestion>* AnswererTest::questions_ = new std::vector<TinyQuestion>();

TEST_F(AnswererTest, ModeNames) {
  for (const std::string m : {"none", "context", "prefix", "context+prefix"})
    EXPECT_EQ(to_string(parse_answer_mode(m)), m);
  EXPECT_TRUE(contains(test::error_of([] { parse_answer_mode("rag"); }),
                       "none, context, prefix, context+prefix"));
}

TEST_F(AnswererTest, EveryModeAnswersWithEvidenceAndGroundedness) {
  const auto answerer = Answerer::open(options());
  EXPECT_TRUE(answerer->has_index());
  EXPECT_TRUE(answerer->has_knowledge_encoder());
  const std::vector<std::string> qs = {(*questions_)[0].question, (*questions_)[1].question};
  const auto none = answerer->answer(qs, AnswerMode::kNone, 2);
  ASSERT_EQ(none.size(), 2u);
  for (const auto& a : none) {
    EXPECT_TRUE(a.evidence.empty());
    EXPECT_EQ(a.groundedness.logprob_with, a.groundedness.logprob_without);  // same input
    EXPECT_LT(a.groundedness.logprob_with, 0.0);
    EXPECT_EQ(a.text.find('\n'), std::string::npos);
  }
  for (AnswerMode mode : {AnswerMode::kContext, AnswerMode::kPrefix, AnswerMode::kContextPrefix}) {
    const auto answers = answerer->answer(qs, mode, 2);
    ASSERT_EQ(answers.size(), 2u);
    const auto retrieved = answerer->retrieve(qs, 2);
    for (size_t i = 0; i < answers.size(); ++i) {
      const auto& a = answers[i];
      ASSERT_EQ(a.evidence.size(), 2u) << to_string(mode);
      EXPECT_EQ(a.evidence[0].segment_id, retrieved[i][0].segment_id);
      EXPECT_FALSE(a.evidence[0].text.empty());
      EXPECT_TRUE(std::isfinite(a.groundedness.logprob_with));
      EXPECT_NE(a.groundedness.logprob_with, a.groundedness.logprob_without) << to_string(mode);
      EXPECT_GE(a.total_ms, a.generate_ms);
      const auto j = a.to_json();
      for (const char* key : {"answer", "evidence", "groundedness", "timings_ms"})
        EXPECT_TRUE(j.contains(key)) << key;
      EXPECT_TRUE(j["evidence"][0].contains("title"));
      EXPECT_TRUE(j["groundedness"]["answer_in_evidence"].is_boolean());
    }
  }
  // Greedy decoding: the same question gives the same answer alone or in a batch.
  EXPECT_EQ(answerer->answer({qs[1]}, AnswerMode::kContext, 2)[0].text,
            answerer->answer(qs, AnswerMode::kContext, 2)[1].text);
}

TEST_F(AnswererTest, ContextModePutsTheSegmentsInThePrompt) {
  const auto answerer = Answerer::open(options());
  const auto& q = (*questions_)[2];
  const auto a = answerer->answer({q.question}, AnswerMode::kContext, 2).at(0);
  std::vector<PromptPassage> passages;
  for (const auto& e : a.evidence) passages.push_back({e.title, e.text});
  const std::string prompt = context_prompt(passages, q.question);
  EXPECT_EQ(answerer->prompt_text(q.question, AnswerMode::kContext, a.evidence), prompt);
  EXPECT_NEAR(a.groundedness.logprob_with, manual_logprob(prompt, a.text), 1e-4);
  EXPECT_NEAR(a.groundedness.logprob_without, manual_logprob(question_prompt(q.question), a.text),
              1e-4);

  // Teacher-forced scores of a given answer, against the same manual computation.
  const auto s = answerer->score_answers({q.question}, {q.answer}, AnswerMode::kContext, 2).at(0);
  EXPECT_NEAR(s.logprob, manual_logprob(prompt, q.answer), 1e-4);
  EXPECT_GE(s.token_accuracy, 0.0);
  EXPECT_LE(s.token_accuracy, 1.0);
  const auto closed = answerer->score_answers({q.question}, {q.answer}, AnswerMode::kNone, 2).at(0);
  EXPECT_NEAR(closed.logprob, manual_logprob(question_prompt(q.question), q.answer), 1e-4);
}

TEST_F(AnswererTest, PrefixModeFeedsTheKnowledgeEncodersPrefix) {
  const auto answerer = Answerer::open(options());
  const auto& q = (*questions_)[3];
  const auto evidence = answerer->retrieve({q.question}, 2).at(0);
  ASSERT_EQ(evidence.size(), 2u);
  // The prefix of the two segments, rank order, computed by hand.
  auto ke = load_knowledge_encoder(*root_ / "ke");
  const auto wp = WordPieceTokenizer::from_vocab_file(*root_ / "ke/vocab.txt");
  std::vector<KVPrefix> per_rank;
  torch::NoGradGuard no_grad;
  for (const auto& e : evidence) {
    Segment s;
    s.title = e.title;
    s.text = e.text;
    const auto ids = wp->encode(encoder_input(s, true), true);
    const auto t = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
    per_rank.push_back(ke->forward(t, torch::ones_like(t)));
  }
  const KVPrefix prefix = concat_prefixes(per_rank);
  ASSERT_EQ(prefix.length(), 8);
  const auto s = answerer->score_answers({q.question}, {q.answer}, AnswerMode::kPrefix, 2).at(0);
  const double want = manual_logprob(question_prompt(q.question), q.answer, &prefix);
  EXPECT_NEAR(s.logprob, want, 1e-4);
  // the prefix matters
  EXPECT_GT(std::abs(want - manual_logprob(question_prompt(q.question), q.answer)), 1e-3);
  // context+prefix: both the segments in the prompt and the prefix.
  std::vector<PromptPassage> passages;
  for (const auto& e : evidence) passages.push_back({e.title, e.text});
  const auto both =
      answerer->score_answers({q.question}, {q.answer}, AnswerMode::kContextPrefix, 2).at(0);
  EXPECT_NEAR(both.logprob, manual_logprob(context_prompt(passages, q.question), q.answer, &prefix),
              1e-4);
}

// segment_tokenizer "llm" and key_position "answer": the answerer cuts the segment into the LLM's
// pieces and places the keys at the last prompt token's position, as computed here by hand.
TEST_F(AnswererTest, PiecePrefixIsCutByTheLlmAndPlacedAtTheAnswer) {
  auto o = options();
  o.knowledge_encoder_dir = *root_ / "ke-pieces";
  const auto answerer = Answerer::open(o);
  const auto& q = (*questions_)[2];
  const auto evidence = answerer->retrieve({q.question}, 1).at(0);
  ASSERT_EQ(evidence.size(), 1u);
  auto ke = load_knowledge_encoder(*root_ / "ke-pieces");
  const auto wp = WordPieceTokenizer::from_vocab_file(*root_ / "ke-pieces/vocab.txt");
  const auto sp = load_tokenizer(*llm_);
  const KnowledgeTokenizer cut(*wp, sp.get());
  const auto t = cut.encode(evidence[0].title, evidence[0].text, 40);
  ASSERT_EQ(t.llm_ids.size(), t.ids.size());
  torch::NoGradGuard no_grad;
  const auto ids = torch::tensor(t.ids).unsqueeze(0);
  const KVPrefix made =
      ke->forward(ids, torch::ones_like(ids), torch::tensor(t.llm_ids).unsqueeze(0));
  ASSERT_EQ(made.length(), 40);
  static LlamaForCausalLM llm = load_llama(*llm_);
  const std::string prompt = question_prompt(q.question);
  const int64_t prompt_tokens = static_cast<int64_t>(sp->encode(prompt, true).size());
  const KVPrefix placed = llm->place_prefix(made, {prompt_tokens - 1});
  const auto s = answerer->score_answers({q.question}, {q.answer}, AnswerMode::kPrefix, 1).at(0);
  const double want = manual_logprob(prompt, q.answer, &placed);
  EXPECT_NEAR(s.logprob, want, 1e-4);
  // the placement matters
  EXPECT_GT(std::abs(want - manual_logprob(prompt, q.answer, &made)), 1e-4);
}

// Placed keys take no positions: 20 segments × 40 entries attend beside a prompt and an answer
// that leave far fewer than 800 of stories260K's 512 positions, and max_top_k does not cap them.
TEST_F(AnswererTest, PlacedPrefixesFitAnyTopK) {
  auto o = options();
  o.knowledge_encoder_dir = *root_ / "ke-pieces";
  o.max_new_tokens = 440;
  const auto answerer = Answerer::open(o);
  const auto& q = (*questions_)[2];
  EXPECT_EQ(answerer->max_top_k(AnswerMode::kPrefix, 20, answerer->prompt_tokens(q.question)), 20);
  const auto a = answerer->answer({q.question}, AnswerMode::kPrefix, 20).at(0);
  EXPECT_EQ(a.evidence.size(), 20u);
  EXPECT_EQ(a.prefill_tokens, answerer->prompt_tokens(q.question));

  // Without a record the default top-k is the cap, or the top-k the encoder was trained with.
  AnswerSetup setup;
  setup.options = o;
  EXPECT_EQ(answer_defaults(*answerer, setup).top_k, kMaxDefaultTopK);
  test::TempDir tmp;
  const auto ke = std::filesystem::path(tmp.path()) / "ke";
  std::filesystem::copy(*root_ / "ke-pieces", ke);
  write_file_atomic((ke / "train_report.json").string(), R"({"top_k": 2, "epochs": []})");
  o.knowledge_encoder_dir = ke.string();
  setup.options = o;
  const auto trained = Answerer::open(o);
  EXPECT_EQ(answer_defaults(*trained, setup).top_k, 2);
  EXPECT_EQ(answer_defaults(*trained, setup, {AnswerMode::kContext}).top_k, kMaxDefaultTopK);
  setup.recorded = AnswerDefaults{RetrieverMode::kBm25, AnswerMode::kPrefix, 4};  // a record wins
  EXPECT_EQ(answer_defaults(*trained, setup).top_k, 4);
}

TEST_F(AnswererTest, LongContextIsTruncatedToFitTheLlm) {
  auto o = options();
  o.max_new_tokens = 400;  // stories260K has 512 positions: little room for 20 segments
  const auto answerer = Answerer::open(o);
  const auto& q = (*questions_)[0];
  const auto a = answerer->answer({q.question}, AnswerMode::kContext, 20, false).at(0);
  EXPECT_GT(a.evidence.size(), 5u);  // evidence as retrieved, more than fits
  const std::string prompt = answerer->prompt_text(q.question, AnswerMode::kContext, a.evidence);
  const auto tok = load_tokenizer(*llm_);
  EXPECT_LE(static_cast<int64_t>(tok->encode(prompt, true).size()), 512 - 401);
  EXPECT_NE(prompt.find("Context: "), std::string::npos);  // the best segment survives, shortened
  EXPECT_NE(prompt.find(question_prompt(q.question)), std::string::npos);

  o.max_new_tokens = 509;  // not even the question fits
  const auto tight = Answerer::open(o);
  EXPECT_TRUE(contains(test::error_of([&] { tight->answer({q.question}, AnswerMode::kNone, 1); }),
                       "positions"));
}

TEST_F(AnswererTest, AQuestionThatDoesNotFitIsAnInputErrorSayingWhatWould) {
  auto o = options();
  o.max_new_tokens = 440;  // stories260K has 512 positions: room for a few segments of P = 4
  const auto answerer = Answerer::open(o);
  const auto& q = (*questions_)[0];
  Error error("none");
  try {
    answerer->answer({q.question}, AnswerMode::kPrefix, 20);
  } catch (const Error& e) {
    error = e;
  }
  EXPECT_EQ(error.kind(), ErrorKind::kInput);
  const std::string e = error.what();
  EXPECT_TRUE(contains(e, "exceed the LLM's 512 positions: ask with top_k")) << e;
  EXPECT_FALSE(contains(e, "question 0")) << e;  // one question: no index to name
  const std::smatch m = [&] {
    std::smatch out;
    std::regex_search(e, out, std::regex(R"(top_k (\d+) or less)"));
    return out;
  }();
  ASSERT_FALSE(m.empty()) << e;
  const int fits = std::stoi(m[1]);
  ASSERT_GE(fits, 1);
  EXPECT_FALSE(answerer->answer({q.question}, AnswerMode::kPrefix, fits).at(0).evidence.empty());
  // In a batch the question is named.
  EXPECT_TRUE(contains(test::error_of([&] {
                         answerer->answer({q.question, q.question}, AnswerMode::kPrefix, 20);
                       }),
                       "question 0: "));
}

TEST_F(AnswererTest, MaxTopKIsTheLargestThatFitsTheLlm) {
  auto o = options();
  o.max_new_tokens = 440;  // stories260K has 512 positions: room for a few segments of P = 4
  const auto answerer = Answerer::open(o);
  const auto& q = (*questions_)[0];
  const int64_t prompt = answerer->prompt_tokens(q.question);
  const int k = answerer->max_top_k(AnswerMode::kPrefix, 1000, prompt);
  EXPECT_EQ(k, (512 - 441 - prompt) / 4);
  ASSERT_GE(k, 1);
  EXPECT_EQ(answerer->max_top_k(AnswerMode::kContextPrefix, 1000, prompt), k);
  EXPECT_EQ(answerer->max_top_k(AnswerMode::kPrefix, k - 1, prompt), k - 1);  // the cap
  // It fits; one more does not, and the error names the same bound.
  EXPECT_EQ(answerer->answer({q.question}, AnswerMode::kPrefix, k, false).at(0).evidence.size(),
            static_cast<size_t>(k));
  const auto e =
      test::error_of([&] { answerer->answer({q.question}, AnswerMode::kPrefix, k + 1, false); });
  EXPECT_TRUE(contains(e, fmt::format("ask with top_k {} or less", k))) << e;
  // Closed-book and in-context take any top_k (context cuts segments to fit).
  EXPECT_EQ(answerer->max_top_k(AnswerMode::kNone, 7, prompt), 7);
  EXPECT_EQ(answerer->max_top_k(AnswerMode::kContext, 7, prompt), 7);
  // Nothing fits where not even the bare prompt does.
  EXPECT_EQ(answerer->max_top_k(AnswerMode::kContext, 7, 512 - 440), 0);
  EXPECT_EQ(answerer->max_top_k(AnswerMode::kPrefix, 7, 512 - 443), 0);  // 2 left, P = 4
}

TEST_F(AnswererTest, DefaultsFollowTheRecordAndFallBackToWhatFits) {
  auto o = options();
  // Answers long enough that a typical question leaves room for the prefix of 3 segments (P = 4).
  const int64_t bare = Answerer::open(o)->prompt_tokens("");
  o.max_new_tokens = static_cast<int>(512 - 1 - (bare + kTypicalQuestionTokens) - 3 * 4 - 2);
  const auto answerer = Answerer::open(o);
  AnswerSetup setup;
  setup.options = o;
  // No record: the richest mode loaded, the largest top-k that fits a typical question (≤ 5).
  const int fits = answerer->max_top_k(AnswerMode::kPrefix, 1000,
                                       answerer->prompt_tokens("") + kTypicalQuestionTokens);
  ASSERT_EQ(fits, 3);  // below the cap of 5: the default is visibly the fit
  auto d = answer_defaults(*answerer, setup);
  EXPECT_EQ(d.mode, AnswerMode::kPrefix);
  EXPECT_EQ(d.top_k, fits);
  EXPECT_EQ(d.retriever, RetrieverMode::kBm25);  // the answerer's (options() chose bm25)
  // Fitting the modes asked with: context alone takes the cap.
  EXPECT_EQ(answer_defaults(*answerer, setup, {AnswerMode::kContext}).top_k, kMaxDefaultTopK);
  EXPECT_EQ(answer_defaults(*answerer, setup, {AnswerMode::kContext, AnswerMode::kPrefix}).top_k,
            fits);

  // A record: its mode and top-k, the top-k lowered to what fits.
  setup.recorded = AnswerDefaults{RetrieverMode::kHybrid, AnswerMode::kContext, 9};
  d = answer_defaults(*answerer, setup);
  EXPECT_EQ(d.mode, AnswerMode::kContext);
  EXPECT_EQ(d.top_k, 9);
  EXPECT_EQ(answer_defaults(*answerer, setup, {AnswerMode::kPrefix}).top_k, fits);
  setup.recorded->top_k = 1;
  EXPECT_EQ(answer_defaults(*answerer, setup, {AnswerMode::kPrefix}).top_k, 1);

  // A recorded mode the loaded models cannot serve falls back: no knowledge encoder → context;
  // no index → none.
  setup.recorded = AnswerDefaults{RetrieverMode::kBm25, AnswerMode::kContextPrefix, 2};
  o.knowledge_encoder_dir.clear();
  const auto no_ke = Answerer::open(o);
  EXPECT_FALSE(serves_mode(*no_ke, AnswerMode::kPrefix));
  EXPECT_EQ(answer_defaults(*no_ke, setup).mode, AnswerMode::kContext);
  EXPECT_EQ(answer_defaults(*no_ke, setup).top_k, 2);
  o.index_dir.clear();
  const auto closed_book = Answerer::open(o);
  EXPECT_EQ(answer_defaults(*closed_book, setup).mode, AnswerMode::kNone);
  setup.recorded.reset();
  EXPECT_EQ(answer_defaults(*closed_book, setup).mode, AnswerMode::kNone);
  EXPECT_EQ(answer_defaults(*no_ke, setup).mode, AnswerMode::kContext);
}

TEST_F(AnswererTest, AskAndEvalTakeTheWorkspacesDefaults) {
  // A workspace of the test's models, recording context with top-2 over BM25.
  const std::string ws = *root_ / "ws";
  fs::create_directories(ws);
  fs::create_directory_symlink(*llm_, ws + "/llm");
  fs::create_directory_symlink(*root_ / "index", ws + "/index");
  fs::create_directory_symlink(*root_ / "ke", ws + "/knowledge_encoder");
  write_answer_defaults(ws, {RetrieverMode::kBm25, AnswerMode::kContext, 2});
  const auto& q = (*questions_)[0];
  const auto evidence = [&](const std::string& args) {
    const auto r = run_kvrag("ask " + args + " --max-new-tokens 4 --no-groundedness --json \"" +
                             q.question + "\"");
    EXPECT_EQ(r.exit_code, 0) << args << ": " << r.err;
    return r.exit_code == 0 ? json::parse(r.out)["evidence"].size() : size_t{1000};
  };
  EXPECT_EQ(evidence("--workspace " + ws), 2u);
  EXPECT_EQ(evidence("--llm " + ws + "/llm --index " + ws + "/index"), 2u);  // its folders
  EXPECT_EQ(evidence("--workspace " + ws + " --top-k 3"), 3u);               // explicit wins
  EXPECT_EQ(evidence("--workspace " + ws + " --mode none"), 0u);
  // Outside the workspace: the richest mode (no knowledge encoder given: context), up to 5.
  EXPECT_EQ(evidence("--llm " + *llm_ + " --index " + ws + "/index"), 5u);

  const auto r = run_kvrag("eval --workspace " + ws + " --max-new-tokens 4 --questions " +
                           (*root_ / "questions.jsonl") + " --limit 2 -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "(2 questions, top-2)")) << r.out;
  EXPECT_TRUE(contains(r.out, "| metric | context |")) << r.out;
}

TEST_F(AnswererTest, ClearErrors) {
  {
    auto o = options();
    o.max_question_tokens = 5;
    const auto answerer = Answerer::open(o);
    const auto e = test::error_of([&] {
      answerer->answer({"a question that is much too long for five tokens"}, AnswerMode::kNone, 1);
    });
    EXPECT_TRUE(contains(e, "the question has")) << e;
    EXPECT_TRUE(contains(e, "max_question_tokens")) << e;
    EXPECT_TRUE(contains(test::error_of([&] { answerer->answer({"  "}, AnswerMode::kNone, 1); }),
                         "empty question"));
    EXPECT_TRUE(contains(
        test::error_of([&] { answerer->score_answers({"who"}, {" "}, AnswerMode::kNone, 1); }),
        "empty answer"));
  }
  {
    auto o = options();
    o.index_dir.clear();
    o.knowledge_encoder_dir.clear();
    const auto answerer = Answerer::open(o);
    EXPECT_FALSE(answerer->has_index());
    EXPECT_TRUE(
        contains(test::error_of([&] { answerer->answer({"who"}, AnswerMode::kContext, 1); }),
                 "needs an index"));
    EXPECT_TRUE(contains(test::error_of([&] { answerer->answer({"who"}, AnswerMode::kPrefix, 1); }),
                         "index"));
    o.index_dir = *root_ / "index";
    const auto with_index = Answerer::open(o);
    EXPECT_TRUE(
        contains(test::error_of([&] { with_index->answer({"who"}, AnswerMode::kPrefix, 1); }),
                 "needs a knowledge encoder"));
  }
  {
    // A knowledge encoder made for another LLM (other layer count and fingerprint).
    auto llm_config = LlamaConfig::load(*llm_ + "/config.json");
    llm_config.num_hidden_layers = 3;
    KnowledgeEncoder ke(
        KnowledgeEncoderConfig::for_llm(BertConfig::load(*root_ / "encoder/config.json"),
                                        llm_config, "0123456789abcdef", queries(4)),
        torch::kFloat32);
    ke->init_fresh(1);
    const std::string dir = *root_ / "ke-other";
    save_knowledge_encoder(*ke, dir, *root_ / "encoder/vocab.txt");
    auto o = options();
    o.knowledge_encoder_dir = dir;
    const auto e = test::error_of([&] { Answerer::open(o); });
    EXPECT_TRUE(contains(e, dir)) << e;
    EXPECT_TRUE(contains(e, "layers")) << e;

    // Same shapes, trained for another LLM (fingerprint).
    KnowledgeEncoder same_shape(
        KnowledgeEncoderConfig::for_llm(BertConfig::load(*root_ / "encoder/config.json"),
                                        LlamaConfig::load(*llm_ + "/config.json"),
                                        "0123456789abcdef", queries(4)),
        torch::kFloat32);
    same_shape->init_fresh(1);
    save_knowledge_encoder(*same_shape, dir, *root_ / "encoder/vocab.txt");
    const auto e2 = test::error_of([&] { Answerer::open(o); });
    EXPECT_TRUE(contains(e2, dir) && contains(e2, "another LLM")) << e2;
  }
  {
    auto o = options();
    o.index_dir = *root_ / "no-such-index";
    EXPECT_TRUE(contains(test::error_of([&] { Answerer::open(o); }), "no-such-index"));
  }
}

// Citations (AnswererOptions::citations): in the prefix modes one attention share per evidence
// segment, in JSON as each item's "attention" and the answer's "cited"; none in context mode or
// without the option. eval reports how often the most cited segment is the gold one.
TEST_F(AnswererTest, PrefixAnswersCiteTheirEvidenceByAttention) {
  auto o = options();
  o.citations = true;
  const auto answerer = Answerer::open(o);
  const auto& q = (*questions_)[1];
  const auto a = answerer->answer({q.question}, AnswerMode::kPrefix, 2).at(0);
  ASSERT_EQ(a.citations.size(), 2u);
  for (const double c : a.citations) {
    EXPECT_GT(c, 0.0);
    EXPECT_LT(c, 1.0);
  }
  EXPECT_LT(a.citations[0] + a.citations[1], 1.0);
  const auto j = a.to_json();
  EXPECT_EQ(j["evidence"][1]["attention"].get<double>(), a.citations[1]);
  EXPECT_EQ(j["cited"].get<int64_t>(), a.citations[1] > a.citations[0] ? 1 : 0);
  EXPECT_TRUE(answerer->answer({q.question}, AnswerMode::kContext, 2).at(0).citations.empty());
  EXPECT_FALSE(Answerer::open(options())
                   ->answer({q.question}, AnswerMode::kPrefix, 2)
                   .at(0)
                   .to_json()
                   .contains("cited"));

  QaEvalOptions eo;
  eo.modes = {AnswerMode::kContext, AnswerMode::kPrefix};
  eo.top_k = 2;
  eo.limit = 6;
  eo.progress = false;
  const auto s = evaluate_qa(*answerer, *root_ / "questions.jsonl", eo).summary;
  EXPECT_FALSE(s["context"].contains("most_cited_is_gold"));
  const auto& g = s["prefix"]["most_cited_is_gold"];
  EXPECT_EQ(g["n_correct"].get<int64_t>() + g["n_wrong"].get<int64_t>(), 6) << g.dump();
  for (const char* k : {"correct", "wrong"}) {
    if (!g[k].is_null()) {
      EXPECT_GE(g[k].get<double>(), 0.0);
      EXPECT_LE(g[k].get<double>(), 1.0);
    }
  }
}

// --combine mixture: one prefix per segment, decoded from the mixture weighted by the retrieval
// posterior. At a vanishing dense temperature that is the dense top-1 segment alone: the same
// answer, score and a posterior of 1 on it; at a huge one every segment counts alike and the
// citations are the posterior given the answer; a sharp BM25 weight picks BM25's best. auto
// mixes beyond the encoder's training top-k.
TEST_F(AnswererTest, MixtureCombinesOnePrefixPerSegmentByTheRetrievalPosterior) {
  const auto& q = (*questions_)[1];
  const auto top1 = Answerer::open(options("dense"))->answer({q.question}, AnswerMode::kPrefix, 1);
  auto o = options("dense");
  o.combine = PrefixCombine::kMixture;
  o.posterior = {1e6, 0.0};  // softmax(q·d / 1e-6)
  o.citations = true;
  const auto sharp = Answerer::open(o)->answer({q.question}, AnswerMode::kPrefix, 3).at(0);
  ASSERT_EQ(sharp.evidence.size(), 3u);
  EXPECT_EQ(sharp.evidence[0].segment_id, top1[0].evidence[0].segment_id);
  EXPECT_EQ(sharp.text, top1[0].text);
  EXPECT_NEAR(sharp.groundedness.logprob_with, top1[0].groundedness.logprob_with, 1e-4);
  ASSERT_EQ(sharp.citations.size(), 3u);
  EXPECT_GT(sharp.citations[0], 0.999);

  o.posterior = {1e-6, 0.0};
  const auto answerer = Answerer::open(o);
  const auto flat = answerer->answer({q.question}, AnswerMode::kPrefix, 3).at(0);
  ASSERT_EQ(flat.citations.size(), 3u);
  EXPECT_NEAR(flat.citations[0] + flat.citations[1] + flat.citations[2], 1.0, 1e-9);
  EXPECT_EQ(flat.prefill_tokens, 3 * answerer->prompt_tokens(q.question));  // a row per segment

  // A sharp BM25 weight: the posterior sits on the segment BM25 scores highest.
  o.posterior = {0.0, 1e6};
  const auto by_bm25 = Answerer::open(o);
  const auto lexical = by_bm25->answer({q.question}, AnswerMode::kPrefix, 3).at(0);
  const auto bm25 = by_bm25->retriever()->bm25_scores({q.question}, {lexical.evidence}).at(0);
  ASSERT_EQ(bm25.size(), 3u);
  const auto best = std::max_element(bm25.begin(), bm25.end()) - bm25.begin();
  ASSERT_EQ(lexical.citations.size(), 3u);
  EXPECT_GT(lexical.citations[best], 0.999);

  // auto: concatenated up to the encoder's training top-k (1 here), mixed beyond it.
  test::TempDir tmp;
  const auto ke = std::filesystem::path(tmp.path()) / "ke";
  std::filesystem::copy(*root_ / "ke", ke);
  write_file_atomic((ke / "train_report.json").string(), R"({"top_k": 1, "epochs": []})");
  o.knowledge_encoder_dir = ke.string();
  o.combine = PrefixCombine::kAuto;
  EXPECT_EQ(Answerer::open(o)->answer({q.question}, AnswerMode::kPrefix, 3).at(0).text, flat.text);
  o.combine = PrefixCombine::kConcat;
  const auto concat = Answerer::open(o)->answer({q.question}, AnswerMode::kPrefix, 3).at(0);
  EXPECT_EQ(concat.prefill_tokens, answerer->prompt_tokens(q.question));

  o.combine = PrefixCombine::kMixture;
  o.contrast = 1.0f;
  EXPECT_THROW(Answerer::open(o), Error);
}

// --extractive: in the modes with evidence every answer is a span of it.
TEST_F(AnswererTest, ExtractiveAnswersAreSpansOfTheEvidence) {
  auto o = options();
  o.extractive = true;
  const auto answerer = Answerer::open(o);
  std::vector<std::string> qs;
  for (const auto& q : *questions_) qs.push_back(q.question);
  for (const auto mode : {AnswerMode::kContext, AnswerMode::kPrefix}) {
    for (const auto& a : answerer->answer(qs, mode, 2)) {
      EXPECT_FALSE(a.text.empty()) << to_string(mode);
      // a span of one title or text (it may start or end inside a word)
      bool found = false;
      for (const auto& e : a.evidence)
        found = found || contains(e.title, a.text) || contains(e.text, a.text);
      EXPECT_TRUE(found) << to_string(mode) << ": " << a.text;
    }
  }
}

TEST_F(AnswererTest, EvaluateQaScoresEveryModeConsistently) {
  const auto answerer = Answerer::open(options());
  QaEvalOptions eo;
  eo.modes = {AnswerMode::kNone, AnswerMode::kContext, AnswerMode::kPrefix};
  eo.top_k = 1;
  eo.batch = 4;
  eo.limit = 5;
  eo.predictions_path = *root_ / "pred.jsonl";
  eo.bertscore_model = *root_ / "encoder";
  eo.progress = false;
  const auto report = evaluate_qa(*answerer, *root_ / "questions.jsonl", eo);
  const auto& s = report.summary;
  for (const char* mode : {"none", "context", "prefix"}) {
    ASSERT_TRUE(s.contains(mode)) << s.dump();
    EXPECT_EQ(s[mode]["n"].get<int64_t>(), 5);
    for (const char* key : {"em", "f1", "contained", "token_accuracy"}) {
      const double v = s[mode][key].get<double>();
      EXPECT_GE(v, 0.0) << key;
      EXPECT_LE(v, 1.0) << key;
    }
    EXPECT_TRUE(s[mode]["bertscore_f1"].is_number());
    EXPECT_TRUE(s[mode]["ttft_ms"]["p50"].is_number());
    EXPECT_EQ(s[mode].size(), 8u);  // and "hallucination"
  }
  EXPECT_EQ(s.size(), 4u);  // three modes and retrieval
  EXPECT_EQ(s["retrieval"]["answer_in_top"].size(), 3u);
  for (const char* k : {"1", "5", "20"})
    EXPECT_TRUE(s["retrieval"]["answer_in_top"][k].is_number());
  // The retrieval numbers are those of index/retrieval_eval.h on the same questions.
  auto qs = read_questions(*root_ / "questions.jsonl");
  qs.resize(5);
  const auto rr = answerer->evaluate_retrieval(qs, {1, 5, 20});
  EXPECT_EQ(s["retrieval"]["answer_in_top"]["5"].get<double>(), rr.answer_in_top.at(5));

  // The per-question lines reproduce the summary.
  std::ifstream in(eo.predictions_path);
  std::map<std::string, double> em_sum;
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    const auto j = json::parse(line);
    for (const char* key : {"question", "answers", "mode", "prediction", "em", "f1", "contained",
                            "token_accuracy", "bertscore_f1", "evidence"})
      EXPECT_TRUE(j.contains(key)) << key;
    em_sum[j["mode"]] += j["em"].get<double>();
    EXPECT_EQ(j["evidence"].size(), j["mode"] == "none" ? 0u : 1u);
  }
  EXPECT_EQ(lines, 15);
  for (const char* mode : {"none", "context", "prefix"})
    EXPECT_DOUBLE_EQ(em_sum[mode] / 5, s[mode]["em"].get<double>());
  EXPECT_TRUE(contains(report.markdown, "| metric | none | context | prefix |"));
}

TEST_F(AnswererTest, AskAndEvalCommands) {
  const std::string common = "--llm " + *llm_ + " --index " + (*root_ / "index") +
                             " --retriever bm25 --knowledge-encoder " + (*root_ / "ke") +
                             " --max-new-tokens 8";
  const auto& q = (*questions_)[0];
  auto r = run_kvrag("ask " + common + " --mode context --top-k 2 --json \"" + q.question + "\"");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = json::parse(r.out);
  EXPECT_TRUE(j["answer"].is_string());
  EXPECT_EQ(j["evidence"].size(), 2u);
  EXPECT_TRUE(j["groundedness"]["logprob_with"].is_number());

  r = run_kvrag("ask " + common + " --mode prefix \"" + q.question + "\"");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "answer: ")) << r.out;
  EXPECT_TRUE(contains(r.out, "groundedness: ")) << r.out;

  r = run_kvrag("eval " + common + " --questions " + (*root_ / "questions.jsonl") +
                " --modes none,context+prefix --limit 3 --json -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto s = json::parse(r.out);
  EXPECT_EQ(s["none"]["n"].get<int64_t>(), 3);
  EXPECT_TRUE(s["context+prefix"]["bertscore_f1"].is_null());
  EXPECT_TRUE(s["retrieval"]["answer_in_top"]["1"].is_number());

  r = run_kvrag("eval --llm " + *llm_ + " --questions " + (*root_ / "questions.jsonl") +
                " --modes none --limit 2 -q");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "| exact match |")) << r.out;

  r = run_kvrag("eval --llm " + *llm_ + " --questions " + (*root_ / "questions.jsonl") +
                " --modes context -q");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "needs an index")) << r.err;
  r = run_kvrag("ask --llm " + *llm_ + " --mode sideways \"q\"");
  EXPECT_NE(r.exit_code, 0);
}

}  // namespace
}  // namespace kvrag
