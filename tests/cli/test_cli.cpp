// The kvrag binary as users and outside checks run it: exit codes, output formats, errors.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/cli_runner.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using test::contains;

test::CliRun kvrag(const std::string& args, const std::string& input = "") {
  return test::run_kvrag(args, input);
}

TEST(Cli, HelpForEveryCommand) {
  const auto top = kvrag("--help");
  EXPECT_EQ(top.exit_code, 0);
  for (const char* cmd :
       {"check-model", "quantize", "tokenize", "generate", "segment", "embed", "index", "search",
        "eval-retrieval", "train-tokenizer", "train-lm", "prepare-nq"}) {
    EXPECT_TRUE(contains(top.out, cmd)) << cmd;
    const auto r = kvrag(std::string(cmd) + " --help");
    EXPECT_EQ(r.exit_code, 0) << cmd;
    EXPECT_TRUE(contains(r.out, "Usage")) << r.out;
  }
  EXPECT_NE(kvrag("").exit_code, 0);
  EXPECT_NE(kvrag("no-such-command").exit_code, 0);
}

TEST(Cli, AnsweringCommandsShowTheirDefaults) {
  for (const char* cmd : {"ask", "eval", "serve"}) {
    const auto r = kvrag(std::string(cmd) + " --help");
    EXPECT_EQ(r.exit_code, 0) << cmd;
    // Fixed defaults by value, those the workspace decides in words (qa/answer_defaults.h).
    EXPECT_TRUE(contains(r.out, "--dtype TEXT:{fp32,bf16,int8}=fp32")) << cmd << ": " << r.out;
    EXPECT_TRUE(contains(r.out, "--max-new-tokens INT:INT in [1 - ")) << cmd << ": " << r.out;
    EXPECT_TRUE(contains(r.out, "]=32")) << cmd << ": " << r.out;
    EXPECT_TRUE(contains(r.out,
                         "default: the workspace's, else hybrid where the index has dense "
                         "vectors, else bm25"))
        << cmd << ": " << r.out;
    EXPECT_TRUE(contains(r.out, "default: the workspace's, else the richest the models serve"))
        << cmd << ": " << r.out;
    EXPECT_TRUE(contains(r.out,
                         "default: the workspace's, else the largest that fits the LLM, at "
                         "most 5"))
        << cmd << ": " << r.out;
  }
  const auto ask = kvrag("ask --help");
  EXPECT_TRUE(contains(ask.out, "--max-question-tokens INT:POSITIVE=256")) << ask.out;
  EXPECT_TRUE(contains(kvrag("eval --help").out, "--batch INT:POSITIVE=16"));
  // Without a workspace or an LLM there is nothing to answer with.
  const auto none = kvrag("ask \"who?\"");
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_TRUE(contains(none.err, "give --workspace DIR or --llm DIR")) << none.err;
}

TEST(Cli, EmbedOffersForceForAnotherTokenizer) {
  // The refusal itself runs on a real index folder in tests/index/test_embed_search.cpp.
  const auto r = kvrag("embed --help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(contains(r.out, "--force")) << r.out;
  EXPECT_TRUE(contains(r.out, "tokenizer")) << r.out;
}

TEST(Cli, NumericOptionsOutOfRangeSayWhatIsWanted) {
  for (const auto& [args, want] : std::vector<std::pair<std::string, std::string>>{
           {"generate --model m --temperature -1",
            "--temperature: must be a non-negative number, not -1"},
           {"embed --index i --encoder e --chunk 0", "--chunk: must be a positive number, not 0"},
           {"embed --index i --encoder e --chunk abc",
            "--chunk: must be a positive number, not abc"},
           {"--threads -2 search --index i q", "--threads: must be a positive number, not -2"},
           {"embed --index i --encoder e --max-length -3",
            "--max-length: must be a non-negative number, not -3"},
           {"search --index i --nprobe -1 q", "--nprobe: must be a non-negative number, not -1"},
           {"train-lm --text t --tokenizer k --out o --max-steps -5",
            "--max-steps: must be a non-negative number, not -5"}}) {
    const auto r = kvrag(args);
    EXPECT_NE(r.exit_code, 0) << args;
    EXPECT_TRUE(contains(r.err, want)) << args << ": " << r.err;
    EXPECT_LT(r.err.size(), 200u) << args << ": " << r.err;  // no 300-digit DBL_MAX
  }
}

TEST(Cli, CheckModelPassesOnBothFixtures) {
  KVRAG_SHARED_PATH_OR_SKIP(fixtures, "fixtures");
  const auto llama = kvrag("check-model " + fixtures + "/tiny-llama");
  EXPECT_EQ(llama.exit_code, 0) << llama.out << llama.err;
  for (const char* name :
       {"logits ", "logits_with_prefix", "greedy.output_ids ", "greedy.output_ids_with_prefix"}) {
    EXPECT_TRUE(contains(llama.out, name)) << name;
  }
  EXPECT_TRUE(contains(llama.out, "max_abs_err="));
  const auto bert = kvrag("check-model " + fixtures + "/tiny-bert");
  EXPECT_EQ(bert.exit_code, 0) << bert.out << bert.err;
  EXPECT_TRUE(contains(bert.out, "pooler_output"));
  EXPECT_EQ(kvrag("check-model --dtype bf16 " + fixtures + "/tiny-llama").exit_code, 0);
  const auto int8 = kvrag("check-model --dtype int8 " + fixtures + "/tiny-llama");
  EXPECT_EQ(int8.exit_code, 0) << int8.out << int8.err;
  EXPECT_TRUE(contains(int8.out, "(llama, int8)")) << int8.out;
  const auto bert8 = kvrag("check-model --dtype int8 " + fixtures + "/tiny-bert");
  EXPECT_EQ(bert8.exit_code, 0) << bert8.out << bert8.err;
  EXPECT_TRUE(contains(bert8.out, "(bert, int8)")) << bert8.out;
}

TEST(Cli, CheckModelFailsWhenAnOutputIsOff) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  std::ifstream in(dir + "/expected.json");
  auto e = json::parse(in);
  e["logits"][0][0][0] = e["logits"][0][0][0].get<double>() + 0.01;
  test::TempDir tmp;
  std::ofstream(tmp / "expected.json") << e.dump();
  const auto r = kvrag("check-model " + dir + " --expected " + (tmp / "expected.json"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.out, "FAIL"));
  EXPECT_TRUE(contains(r.out, "logits_with_prefix")) << "every output is still reported";
}

// A copy of the fixture folder with one file replaced.
std::string copy_fixture(const std::string& from, const test::TempDir& tmp) {
  const std::string to = tmp / "model";
  fs::copy(from, to, fs::copy_options::recursive);
  for (const auto& entry : fs::directory_iterator(to)) {
    fs::permissions(entry.path(), fs::perms::owner_write, fs::perm_options::add);
  }
  return to;
}

TEST(Cli, CheckModelReportsBrokenCheckpoints) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  {
    test::TempDir tmp;
    const auto model = copy_fixture(dir, tmp);
    fs::resize_file(model + "/model-00002-of-00002.safetensors", 1000);
    const auto r = kvrag("check-model " + model);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "model-00002-of-00002.safetensors")) << r.err;
  }
  {
    test::TempDir tmp;
    const auto model = copy_fixture(dir, tmp);
    std::ifstream in(model + "/config.json");
    auto config = json::parse(in);
    config["intermediate_size"] = 170;
    std::ofstream(model + "/config.json") << config.dump();
    const auto r = kvrag("check-model " + model);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "mlp.gate_proj.weight")) << r.err;
    EXPECT_TRUE(contains(r.err, "[172, 64]")) << r.err;
  }
  {
    test::TempDir tmp;
    const auto model = copy_fixture(dir, tmp);
    std::ofstream(model + "/config.json") << "{\"model_type\": \"llama\", ";
    const auto r = kvrag("check-model " + model);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "config.json")) << r.err;
  }
  const auto missing = kvrag("check-model /nonexistent/model");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(contains(missing.err, "/nonexistent/model")) << missing.err;
}

TEST(Cli, TokenizeJsonlWithBothTokenizerKinds) {
  KVRAG_SHARED_PATH_OR_SKIP(shared, "tokenizers");
  const std::string input = "{\"text\": \"Hello, world!\"}\n{\"text\": \"\"}\n";
  const auto sp = kvrag("tokenize --jsonl --tokenizer " + shared + "/llama/tokenizer.model", input);
  EXPECT_EQ(sp.exit_code, 0) << sp.err;
  EXPECT_EQ(sp.out, "{\"ids\": [1, 15043, 29892, 3186, 29991]}\n{\"ids\": [1]}\n");
  const auto sp_raw = kvrag(
      "tokenize --jsonl --no-special --tokenizer " + shared + "/llama/tokenizer.model", input);
  EXPECT_EQ(sp_raw.out, "{\"ids\": [15043, 29892, 3186, 29991]}\n{\"ids\": []}\n");
  const auto wp =
      kvrag("tokenize --jsonl --tokenizer " + shared + "/bert-base-uncased/vocab.txt", input);
  EXPECT_EQ(wp.exit_code, 0) << wp.err;
  EXPECT_EQ(wp.out, "{\"ids\": [101, 7592, 1010, 2088, 999, 102]}\n{\"ids\": [101, 102]}\n");
  const auto wp_raw =
      kvrag("tokenize --jsonl --no-special --tokenizer " + shared + "/bert-base-uncased/vocab.txt",
            input);
  EXPECT_EQ(wp_raw.out, "{\"ids\": [7592, 1010, 2088, 999]}\n{\"ids\": []}\n");
}

TEST(Cli, TokenizeNamesTheBadLine) {
  KVRAG_SHARED_PATH_OR_SKIP(vocab, "tokenizers/bert-base-uncased/vocab.txt");
  const auto bad_json =
      kvrag("tokenize --jsonl --tokenizer " + vocab, "{\"text\": \"ok\"}\n{\"text\": \n");
  EXPECT_EQ(bad_json.exit_code, 1);
  EXPECT_TRUE(contains(bad_json.err, "line 2")) << bad_json.err;
  const auto no_text = kvrag("tokenize --jsonl --tokenizer " + vocab, "{\"question\": \"ok\"}\n");
  EXPECT_EQ(no_text.exit_code, 1);
  EXPECT_TRUE(contains(no_text.err, "line 1")) << no_text.err;
  const auto missing = kvrag("tokenize --jsonl --tokenizer /nonexistent/vocab.txt", "");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(contains(missing.err, "/nonexistent/vocab.txt")) << missing.err;
}

// A character-level WordPiece vocabulary: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, a-z 5-30,
// ##a-##z 31-56.
std::string write_char_vocab(const test::TempDir& tmp) {
  std::string text = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
  for (char c = 'a'; c <= 'z'; ++c) text += std::string(1, c) + "\n";
  for (char c = 'a'; c <= 'z'; ++c) text += std::string("##") + c + "\n";
  std::ofstream(tmp / "vocab.txt") << text;
  return tmp / "vocab.txt";
}

TEST(Cli, TokenizeWritesTheLinesBeforeABadOne) {
  test::TempDir tmp;
  const std::string vocab = write_char_vocab(tmp);
  const auto r = kvrag("tokenize --jsonl --tokenizer " + vocab,
                       "{\"text\": \"ab\"}\n\n{\"text\": \"c\"}\n{\"text\": \n{\"text\": \"d\"}\n");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "{\"ids\": [2, 5, 32, 3]}\n{\"ids\": [2, 7, 3]}\n");
  EXPECT_TRUE(contains(r.err, "kvrag: error: stdin: line 4: invalid JSON")) << r.err;
}

TEST(Cli, EmptyCorporaAndQuestionFilesAreErrorsUnlessAllowed) {
  test::TempDir tmp;
  const std::string vocab = write_char_vocab(tmp);
  std::ofstream(tmp / "empty.jsonl") << "";
  std::ofstream(tmp / "q.jsonl") << "\n\n";
  std::ofstream(tmp / "corpus.jsonl") << "{\"id\": 1, \"title\": \"a\", \"text\": \"abc def\"}\n";
  const std::string segment = "segment --tokenizer " + vocab + " --corpus ";

  auto r = kvrag(segment + tmp / "empty.jsonl" + " --index " + tmp / "idx0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "kvrag: error: corpus " + tmp / "empty.jsonl" +
                                  ": no documents (the file is empty); pass --allow-empty to "
                                  "accept"))
      << r.err;
  EXPECT_EQ(r.out, "");
  r = kvrag(segment + tmp / "empty.jsonl" + " --index " + tmp / "idx0 --allow-empty");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "0 segments from 0 documents")) << r.out;

  r = kvrag(segment + tmp / "corpus.jsonl" + " --index " + tmp / "idx");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string no_questions =
      tmp / "q.jsonl" +
      ": no questions (the file has only blank lines); pass --allow-empty to accept";
  const std::string eval_retrieval =
      "eval-retrieval --mode bm25 --index " + tmp / "idx" + " --questions " + tmp / "q.jsonl";
  r = kvrag(eval_retrieval);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, no_questions)) << r.err;
  EXPECT_EQ(r.out, "");
  r = kvrag(eval_retrieval + " --allow-empty --json");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(json::parse(r.out).at("n"), 0) << r.out;

  // eval reads the questions before it loads any model.
  r = kvrag("eval --llm " + tmp / "no-llm" + " --questions " + tmp / "q.jsonl");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, no_questions)) << r.err;
}

TEST(Cli, PrepareNqPrintsItsCountsAndNamesAMissingFile) {
  test::TempDir tmp;
  const json example = {
      {"example_id", 42},
      {"question_text", "is the sky blue"},
      {"document_url", "https://en.wikipedia.org/wiki/Sky"},
      {"document_text", "<P> The sky is blue . </P>"},
      {"annotations",
       json::array(
           {{{"long_answer", {{"start_token", 0}, {"end_token", 7}, {"candidate_index", 0}}},
             {"short_answers", json::array()},
             {"yes_no_answer", "YES"}}})}};
  std::ofstream(tmp / "nq.jsonl") << example.dump() << "\nnot json\n";
  auto r =
      kvrag("prepare-nq --quiet --split 1 --input " + tmp / "nq.jsonl" + " --out " + tmp / "out");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "1 train and 0 dev questions")) << r.out;
  EXPECT_TRUE(contains(r.out, "1 documents")) << r.out;
  EXPECT_TRUE(contains(r.out, "skipped 1 example; malformed line 1 (first malformed line 2"))
      << r.out;
  EXPECT_TRUE(fs::exists(tmp / "out/corpus.jsonl"));
  r = kvrag("prepare-nq --input " + tmp / "missing.jsonl.gz" + " --out " + tmp / "out2");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(contains(r.err, "missing.jsonl.gz")) << r.err;
}

TEST(Cli, EvalAllowEmptyReportsNoQuestions) {
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  test::TempDir tmp;
  std::ofstream(tmp / "q.jsonl") << "";
  const auto r = kvrag("eval -q --json --modes none --llm " + llm + " --questions " +
                       tmp / "q.jsonl" + " --allow-empty");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto summary = json::parse(r.out);
  EXPECT_EQ(summary.at("none").at("n"), 0) << r.out;
  EXPECT_TRUE(summary.at("none").at("em").is_null()) << r.out;
}

TEST(Cli, AFolderOfTheWrongKindIsNamed) {
  KVRAG_SHARED_PATH_OR_SKIP(fixtures, "fixtures");
  const std::string bert = fixtures + "/tiny-bert", llama = fixtures + "/tiny-llama";
  const std::string is_bert = bert + " is a BERT checkpoint (config.json model_type \"bert\"); ";
  const std::string is_llama =
      llama + " is a LLaMA checkpoint (config.json model_type \"llama\"); ";

  auto r = kvrag("generate --model " + bert + " --prompt hi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, is_bert + "generate needs a LLaMA checkpoint")) << r.err;
  r = kvrag("ask --mode none --llm " + bert + " 'who?'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, is_bert + "--llm needs a LLaMA checkpoint")) << r.err;

  // An index folder as the LLM, a LLaMA as the retriever's encoder.
  test::TempDir tmp;
  const std::string vocab = write_char_vocab(tmp);
  std::ofstream(tmp / "corpus.jsonl") << "{\"id\": 1, \"text\": \"abc def\"}\n";
  ASSERT_EQ(kvrag("segment --tokenizer " + vocab + " --corpus " + tmp / "corpus.jsonl" +
                  " --index " + tmp / "idx")
                .exit_code,
            0);
  r = kvrag("ask --mode none --llm " + tmp / "idx" + " 'who?'");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, tmp / "idx" +
                                  " is an index folder (it holds segments.sqlite); --llm needs a "
                                  "LLaMA checkpoint"))
      << r.err;
  r = kvrag("embed --index " + tmp / "idx" + " --encoder " + llama);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, is_llama + "--encoder needs a BERT checkpoint")) << r.err;
}

TEST(Cli, TrainTokenizerWritesAModelThatTokenizes) {
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 60; ++i) {
    text += "Kora Vell was born in Arnsby in 18" + std::to_string(10 + i) +
            ".\nThe Velport Works makes clocks.\n";
  }
  std::ofstream(dir / "text.txt") << text;
  const auto r = kvrag("train-tokenizer --input " + dir / "text.txt" + " --out " +
                       dir / "tok.model" + " --vocab-size 320");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "pieces")) << r.out;
  const auto ids =
      kvrag("tokenize --jsonl --tokenizer " + dir / "tok.model", "{\"text\": \"Kora Vell\"}\n");
  EXPECT_EQ(ids.exit_code, 0) << ids.err;
  EXPECT_EQ(ids.out.rfind("{\"ids\": [1, ", 0), 0u) << ids.out;  // BOS first

  const auto missing =
      kvrag("train-tokenizer --input " + dir / "none.txt" + " --out " + dir / "x.model");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(contains(missing.err, "none.txt")) << missing.err;
  EXPECT_FALSE(fs::exists(dir / "x.model"));
}

TEST(Cli, GenerateReproducesTheReferenceGenerations) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  std::ifstream in(dir + "/reference/greedy_generations.jsonl");
  std::string line;
  int checked = 0;
  while (std::getline(in, line)) {
    const auto ref = json::parse(line);
    const auto prompt = ref["prompt"].get<std::string>();
    const int n = ref["steps"].get<int>() + 1 - static_cast<int>(ref["prompt_ids"].size());
    if (n > 130) continue;  // the long cases are covered by model_tests; keep this one quick
    const auto r = kvrag("generate --json --temperature 0 --model " + dir + " --prompt '" + prompt +
                         "' --max-new-tokens " + std::to_string(n));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto out = json::parse(r.out);
    EXPECT_EQ(out["ids"], ref["ids"]) << prompt;
    EXPECT_EQ(prompt + out["text"].get<std::string>(), ref["text"].get<std::string>());
    ++checked;
  }
  EXPECT_GE(checked, 5);
}

TEST(Cli, GenerateInt8) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  EXPECT_TRUE(contains(kvrag("generate --help").out, "fp32,bf16,int8"));
  const auto r = kvrag("generate --json --dtype int8 --no-stop --model " + dir +
                       " --prompt 'Once upon a time' --max-new-tokens 16");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto ids = json::parse(r.out)["ids"].get<std::vector<int64_t>>();
  EXPECT_EQ(ids.size(), 5u + 16u);  // BOS + 4 prompt pieces + 16 new
  EXPECT_EQ(std::vector<int64_t>(ids.begin(), ids.begin() + 5),
            (std::vector<int64_t>{1, 403, 407, 261, 378}));
  EXPECT_NE(kvrag("generate --dtype int4 --model " + dir + " --prompt hi").exit_code, 0);
}

// quantize writes a folder that generate --dtype int8 reads (tokenizer included) to the same
// tokens as the checkpoint it came from; a float load of it, or a second quantize into it, is
// refused with a message saying why.
TEST(Cli, QuantizeSavesWhatGenerateInt8Reads) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  test::TempDir tmp;
  const auto q = kvrag("quantize " + dir + " --out " + (tmp / "int8"));
  ASSERT_EQ(q.exit_code, 0) << q.err;
  EXPECT_TRUE(contains(q.out, "int8 weights saved")) << q.out;
  const std::string args = " --prompt 'Once upon a time' --max-new-tokens 24 --no-stop";
  const auto from_float = kvrag("generate --json --dtype int8 --model " + dir + args);
  const auto from_saved = kvrag("generate --json --dtype int8 --model " + (tmp / "int8") + args);
  ASSERT_EQ(from_saved.exit_code, 0) << from_saved.err;
  EXPECT_EQ(json::parse(from_saved.out)["ids"], json::parse(from_float.out)["ids"]);
  const auto fp32 = kvrag("generate --model " + (tmp / "int8") + args);
  EXPECT_NE(fp32.exit_code, 0);
  EXPECT_TRUE(contains(fp32.err, "--dtype int8")) << fp32.err;
  const auto again = kvrag("quantize " + dir + " --out " + (tmp / "int8"));
  EXPECT_NE(again.exit_code, 0);
  EXPECT_TRUE(contains(again.err, "already exists")) << again.err;
}

TEST(Cli, GenerateSamplingIsSeeded) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  const std::string base =
      "generate --json --model " + dir +
      " --prompt 'The big dog' --max-new-tokens 20 --temperature 0.9 --top-p 0.9";
  const auto a = kvrag(base + " --seed 1"), b = kvrag(base + " --seed 1"),
             c = kvrag(base + " --seed 2");
  EXPECT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(a.out, c.out);
}

}  // namespace
}  // namespace kvrag
