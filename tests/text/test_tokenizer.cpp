// text/tokenizer.h: which file a --tokenizer argument names, and the tokenizer id segment stores
// record (pinned: the value computed by the code this replaced, segment_command's tokenizer_id).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "support/test_support.h"
#include "text/tokenizer.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;

const char* const kVocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n";

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(TokenizerFile, AFileOrTheWordPieceFileOfAFolder) {
  test::TempDir tmp;
  write(tmp / "my-vocab.txt", kVocab);
  EXPECT_EQ(wordpiece_tokenizer_file(tmp / "my-vocab.txt"), tmp / "my-vocab.txt");

  fs::create_directories(tmp / "enc");
  write(tmp / "enc/vocab.txt", kVocab);
  EXPECT_EQ(wordpiece_tokenizer_file(tmp / "enc"), tmp / "enc/vocab.txt");
  write(tmp / "enc/tokenizer.json", "{}");  // tokenizer.json wins over vocab.txt
  EXPECT_EQ(wordpiece_tokenizer_file(tmp / "enc"), tmp / "enc/tokenizer.json");

  fs::create_directories(tmp / "empty");
  write(tmp / "empty/tokenizer.model", "");  // SentencePiece: not a retriever's tokenizer
  EXPECT_EQ(test::error_of([&] { wordpiece_tokenizer_file(tmp / "empty"); }),
            "tokenizer: no tokenizer.json or vocab.txt in " + (tmp / "empty"));
}

TEST(TokenizerId, NameAndContentHash) {
  test::TempDir tmp;
  fs::create_directories(tmp / "a");
  fs::create_directories(tmp / "b");
  write(tmp / "a/vocab.txt", kVocab);
  write(tmp / "b/vocab.txt", kVocab);
  EXPECT_EQ(tokenizer_id(tmp / "a/vocab.txt"), "vocab.txt#fnv1a64:a5f9e7d81ac733df");
  // moved: same id
  EXPECT_EQ(tokenizer_id(tmp / "b/vocab.txt"), tokenizer_id(tmp / "a/vocab.txt"));
  write(tmp / "b/vocab.txt", std::string(kVocab) + "a\n");
  // changed: another
  EXPECT_NE(tokenizer_id(tmp / "b/vocab.txt"), tokenizer_id(tmp / "a/vocab.txt"));
  write(tmp / "empty.txt", "");
  // Not FNV's offset basis: the start value segment_command used (see tokenizer_id).
  EXPECT_EQ(tokenizer_id(tmp / "empty.txt"), "empty.txt#fnv1a64:14650fb0739d0383");

  const std::string message = test::error_of([&] { tokenizer_id(tmp / "missing.txt"); });
  EXPECT_NE(message.find(tmp / "missing.txt"), std::string::npos) << message;
}

}  // namespace
}  // namespace kvrag
