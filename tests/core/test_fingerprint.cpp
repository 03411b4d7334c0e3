// Fnv1a64 (core/fingerprint.h): the values are pinned. Encoder, LLM and tokenizer fingerprints
// stored in users' index folders and knowledge encoders are made of these steps; the expected
// hex below was computed with the three implementations this class replaced (knowledge_encoder's
// Fnv, embedder's word-wise Fingerprint, segment_command's tokenizer_id) before the change.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "core/fingerprint.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

std::string bytes_hex(const std::string& s) {
  Fnv1a64 f;
  f.add(s.data(), s.size());
  return f.hex();
}

TEST(Fingerprint, ByteWiseIsStandardFnv1a64) {
  EXPECT_EQ(bytes_hex(""), "cbf29ce484222325");   // the offset basis
  EXPECT_EQ(bytes_hex("a"), "af63dc4c8601ec8c");  // published FNV-1a 64 test vectors
  EXPECT_EQ(bytes_hex("foobar"), "85944171f73967e8");
  EXPECT_EQ(bytes_hex("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n"), "e78096dfd01cf895");
  Fnv1a64 f;
  EXPECT_EQ(f.value(), 0xcbf29ce484222325ULL);
}

TEST(Fingerprint, AnotherStartValue) {
  // tokenizer_id's start value (text/tokenizer.h), 19 digits of the offset basis.
  Fnv1a64 f(1469598103934665603ULL);
  EXPECT_EQ(f.hex(), "14650fb0739d0383");
  const std::string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n";
  f.add(vocab.data(), vocab.size());
  EXPECT_EQ(f.hex(), "a5f9e7d81ac733df");
  Fnv1a64 g(1469598103934665603ULL);
  g.add("a", 1);
  EXPECT_EQ(g.hex(), "44bd8ad473cd9906");
}

TEST(Fingerprint, FieldsAreSeparated) {
  Fnv1a64 a, b;
  a.add_field("ab");
  a.add_field("c");
  b.add_field("a");
  b.add_field("bc");
  EXPECT_EQ(a.hex(), "ad22872f536e4705");
  EXPECT_EQ(b.hex(), "401801fc84f3ca79");
}

TEST(Fingerprint, LlmFingerprintSteps) {
  // What llm_fingerprint does: canonical config, then per tensor name, dtype, shape and bytes.
  Fnv1a64 f;
  f.add_field("{\"dim\":64}");
  f.add_field("model.embed_tokens.weight");
  f.add_field("F32");
  const float data[4] = {1.0f, -2.5f, 0.0f, 3.25f};
  f.add(data, sizeof data);
  EXPECT_EQ(f.hex(), "c1844e34ac02d5a6");
}

TEST(Fingerprint, WordWise) {
  Fnv1a64 f;
  const std::string s = "0123456789abcdefghi";  // two words and three tail bytes
  f.add_words(s.data(), s.size());
  EXPECT_EQ(f.hex(), "f16ca2e1b154e689");
  EXPECT_NE(f.hex(), bytes_hex(s));

  // What Embedder's fingerprint does with its strings: words, then a '\0' byte.
  Fnv1a64 g;
  for (const std::string field : {"{\"hidden_size\": 64}", "mean", "128"}) {
    g.add_words(field.data(), field.size());
    g.add("", 1);
  }
  EXPECT_EQ(g.hex(), "b000ba1d5a9342d4");
}

TEST(Fingerprint, FileWordWiseCrossesTheReadBuffer) {
  test::TempDir tmp;
  std::string content((1 << 20) + 13, '\0');  // one full 1 MiB read and a tail
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>((i * 31 + 7) % 251);
  std::ofstream(tmp / "big.bin", std::ios::binary) << content;
  Fnv1a64 f;
  f.add_file_words(tmp / "big.bin");
  EXPECT_EQ(f.hex(), "e5e9098a29204caa");
  Fnv1a64 g;
  g.add_words(content.data(), content.size());
  EXPECT_EQ(g.hex(), f.hex());

  Fnv1a64 missing;
  const std::string message = test::error_of([&] { missing.add_file_words(tmp / "missing.bin"); });
  EXPECT_NE(message.find("missing.bin"), std::string::npos) << message;
}

}  // namespace
}  // namespace kvrag
