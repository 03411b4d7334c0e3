// check_model_folder: a folder of the wrong kind is named for what it is (a BERT or LLaMA
// checkpoint, a knowledge encoder, an index folder, a demo workspace) before any loader trips
// over a file that kind lacks; folders nothing identifies are left to the loaders.
#include "checkpoint/model_folder.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "support/checkpoint_test_util.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// DIR/NAME with config.json {"model_type": TYPE}.
std::string folder_of_type(const TempDir& tmp, const std::string& name, const std::string& type) {
  const std::string dir = tmp / name;
  fs::create_directories(dir);
  test::write_bytes(dir + "/config.json", "{\"model_type\": \"" + type + "\", \"x\": 1}");
  return dir;
}

TEST(ModelFolder, AWrongCheckpointIsNamedByItsModelType) {
  TempDir tmp;
  const auto bert = folder_of_type(tmp, "bert", "bert");
  const auto llama = folder_of_type(tmp, "llama", "llama");
  const auto encoder = folder_of_type(tmp, "ke", "kvrag_knowledge_encoder");
  const auto gpt2 = folder_of_type(tmp, "gpt2", "gpt2");

  EXPECT_EQ(test::error_of([&] { check_model_folder(bert, {ModelFolder::kLlama}, "generate"); }),
            bert +
                " is a BERT checkpoint (config.json model_type \"bert\"); generate needs a LLaMA "
                "checkpoint");
  EXPECT_EQ(test::error_of([&] { check_model_folder(llama, {ModelFolder::kBert}, "--encoder"); }),
            llama +
                " is a LLaMA checkpoint (config.json model_type \"llama\"); --encoder needs a "
                "BERT checkpoint");
  EXPECT_EQ(test::error_of([&] { check_model_folder(encoder, {ModelFolder::kLlama}); }),
            encoder +
                " is a knowledge-encoder folder (config.json model_type "
                "\"kvrag_knowledge_encoder\"); a LLaMA checkpoint is needed");
  EXPECT_EQ(test::error_of([&] {
              check_model_folder(llama, {ModelFolder::kBert, ModelFolder::kKnowledgeEncoder},
                                 "train-prefix --init");
            }),
            llama +
                " is a LLaMA checkpoint (config.json model_type \"llama\"); train-prefix --init "
                "needs a BERT checkpoint or a knowledge-encoder folder");
  EXPECT_EQ(test::error_of([&] { check_model_folder(gpt2, {ModelFolder::kLlama}, "--llm"); }),
            gpt2 +
                " is a \"gpt2\" checkpoint (config.json model_type \"gpt2\"); --llm needs a LLaMA "
                "checkpoint");

  // The right kind passes.
  EXPECT_NO_THROW(check_model_folder(bert, {ModelFolder::kBert}, "--encoder"));
  EXPECT_NO_THROW(check_model_folder(llama + "/", {ModelFolder::kLlama}, "generate"));
  EXPECT_NO_THROW(check_model_folder(encoder, {ModelFolder::kBert, ModelFolder::kKnowledgeEncoder},
                                     "train-prefix --init"));
}

TEST(ModelFolder, IndexFoldersWorkspacesFilesAndMissingFolders) {
  TempDir tmp;
  fs::create_directories(tmp / "index");
  test::write_bytes(tmp / "index/segments.sqlite", "");
  EXPECT_EQ(
      test::error_of([&] { check_model_folder(tmp / "index", {ModelFolder::kLlama}, "--llm"); }),
      (tmp / "index") +
          " is an index folder (it holds segments.sqlite); --llm needs a LLaMA "
          "checkpoint");
  fs::create_directories(tmp / "ws/stages");
  EXPECT_EQ(test::error_of([&] {
              check_model_folder(tmp / "ws", {ModelFolder::kKnowledgeEncoder},
                                 "--knowledge-encoder");
            }),
            (tmp / "ws") +
                " is a kvrag demo workspace (it holds stages/); --knowledge-encoder needs a "
                "knowledge-encoder folder");
  test::write_bytes(tmp / "file", "x");
  EXPECT_EQ(test::error_of([&] { check_model_folder(tmp / "file", {ModelFolder::kBert}); }),
            (tmp / "file") + " is a file, not a folder; a BERT checkpoint is needed");
  EXPECT_EQ(test::error_of(
                [&] { check_model_folder(tmp / "nowhere", {ModelFolder::kLlama}, "generate"); }),
            (tmp / "nowhere") + ": no such folder; generate needs a LLaMA checkpoint");
}

TEST(ModelFolder, UnidentifiedFoldersAreLeftToTheLoaders) {
  TempDir tmp;
  // No config.json, a config.json without model_type, one that does not parse.
  fs::create_directories(tmp / "bare");
  EXPECT_NO_THROW(check_model_folder(tmp / "bare", {ModelFolder::kLlama}, "generate"));
  EXPECT_EQ(describe_model_folder(tmp / "bare"), "");
  fs::create_directories(tmp / "untyped");
  test::write_bytes(tmp / "untyped/config.json", "{\"vocab_size\": 5}");
  EXPECT_NO_THROW(check_model_folder(tmp / "untyped", {ModelFolder::kBert}, "--encoder"));
  fs::create_directories(tmp / "broken");
  test::write_bytes(tmp / "broken/config.json", "{\"model_type\": ");
  EXPECT_NO_THROW(check_model_folder(tmp / "broken", {ModelFolder::kBert}, "--encoder"));
  // A config.json decides even beside index files (a retriever folder may hold anything else).
  fs::create_directories(tmp / "bert");
  test::write_bytes(tmp / "bert/config.json", "{\"model_type\": \"bert\"}");
  test::write_bytes(tmp / "bert/segments.sqlite", "");
  EXPECT_NO_THROW(check_model_folder(tmp / "bert", {ModelFolder::kBert}));
}

TEST(ModelFolder, TheSharedFixtures) {
  KVRAG_SHARED_PATH_OR_SKIP(fixtures, "fixtures");
  EXPECT_EQ(describe_model_folder(fixtures + "/tiny-bert"),
            "a BERT checkpoint (config.json model_type \"bert\")");
  EXPECT_EQ(describe_model_folder(fixtures + "/tiny-llama"),
            "a LLaMA checkpoint (config.json model_type \"llama\")");
  EXPECT_NO_THROW(check_model_folder(fixtures + "/tiny-llama", {ModelFolder::kLlama}, "generate"));
  EXPECT_NE(test::error_of([&] {
              check_model_folder(fixtures + "/tiny-bert", {ModelFolder::kLlama}, "generate");
            })
                .find("tiny-bert is a BERT checkpoint (config.json model_type \"bert\"); generate "
                      "needs a LLaMA checkpoint"),
            std::string::npos);
}

}  // namespace
}  // namespace kvrag
