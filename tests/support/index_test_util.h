// Helpers for the index tests: files, error expectations, a tiny WordPiece vocabulary.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "support/test_support.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag::test {

// Writes `bytes` to `path` verbatim.
inline void write_text(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// A handmade vocabulary: every word below is one token, except "running" = run ##ning,
// "unaffable" = un ##aff ##able and "cats" = cat ##s.
inline const std::vector<std::string>& tiny_vocab() {
  static const std::vector<std::string> v = {
      "[PAD]", "[UNK]",  "[CLS]", "[SEP]",  "[MASK]",  "the", "cat",   "sat",
      "on",    "mat",    "dog",   "ran",    "a",       "big", "red",   "ball",
      "run",   "##ning", "un",    "##aff",  "##able",  "##s", ",",     ".",
      "!",     "cafe",   "zebra", "zoo",    "history", "of",  "paris", "city",
      "river", "is",     "in",    "france", "and",     "x",   "y",     "z"};
  return v;
}

// Writes tiny_vocab() as DIR/vocab.txt and loads it.
inline std::unique_ptr<WordPieceTokenizer> tiny_tokenizer(const TempDir& dir) {
  std::string text;
  for (const std::string& t : tiny_vocab()) text += t + "\n";
  write_text(dir / "vocab.txt", text);
  return WordPieceTokenizer::from_vocab_file(dir / "vocab.txt");
}

}  // namespace kvrag::test

// Expects `stmt` to throw kvrag::Error whose message contains `part1` (and `part2`, if given).
#define EXPECT_KVRAG_ERROR(stmt, ...)                                                         \
  do {                                                                                        \
    const std::string msg_ = ::kvrag::test::error_of([&] { stmt; });                          \
    EXPECT_FALSE(msg_.empty()) << "expected kvrag::Error from: " #stmt;                       \
    for (const char* part_ : {__VA_ARGS__}) {                                                 \
      EXPECT_NE(msg_.find(part_), std::string::npos) << "'" << part_ << "' not in: " << msg_; \
    }                                                                                         \
  } while (0)
