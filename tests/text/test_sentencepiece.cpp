// SentencePiece through the isolated module: every reference encoding made by the official
// library, llama2.c's tokenizer cases, decoding, and errors.

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "support/test_support.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/tokenizer.h"

namespace kvrag {
namespace {

using json = nlohmann::json;

TEST(SentencePiece, MatchesEveryReferenceEncoding) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "tokenizers/llama");
  SentencePieceTokenizer sp(dir + "/tokenizer.model");
  EXPECT_EQ(sp.vocab_size(), 32000);
  EXPECT_EQ(sp.bos_id(), 1);
  EXPECT_EQ(sp.eos_id(), 2);
  std::ifstream in(dir + "/sentencepiece_refs.jsonl");
  std::string line;
  int rows = 0, mismatches = 0;
  while (std::getline(in, line)) {
    const auto ref = json::parse(line);
    const auto text = ref["text"].get<std::string>();
    const auto want = ref["ids"].get<std::vector<TokenId>>();
    const auto got = sp.encode(text, /*add_special=*/false);
    if (got != want && ++mismatches <= 5) ADD_FAILURE() << "ids differ for: " << text;
    if (ref.contains("pieces")) {
      const auto pieces = ref["pieces"].get<std::vector<std::string>>();
      for (size_t i = 0; i < pieces.size() && i < got.size(); ++i)
        EXPECT_EQ(sp.id_to_piece(got[i]), pieces[i]);
    }
    // With BOS: exactly one BOS in front.
    auto with_bos = sp.encode(text);
    ASSERT_FALSE(with_bos.empty());
    EXPECT_EQ(with_bos[0], 1);
    ++rows;
  }
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(rows, 2839);
}

TEST(SentencePiece, Llama2cTokenizerCases) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "tokenizers/llama");
  const auto tokenizer = load_tokenizer(dir + "/tokenizer.model");
  std::ifstream in(dir + "/upstream_token_tests.json");
  const auto cases = json::parse(in)["cases"];
  ASSERT_EQ(cases.size(), 5u);
  for (const auto& c : cases) {
    const auto text = c["text"].get<std::string>();
    EXPECT_EQ(tokenizer->encode(text), c["ids"].get<std::vector<TokenId>>()) << text;
    EXPECT_EQ(tokenizer->decode(tokenizer->encode(text)), text);
  }
}

TEST(SentencePiece, DecodeSkipsControlTokensAndPieceLookup) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  SentencePieceTokenizer sp(dir + "/tokenizer.model");
  EXPECT_EQ(sp.vocab_size(), 512);
  auto ids = sp.encode("Once upon a time");
  ids.push_back(sp.eos_id());
  EXPECT_EQ(sp.decode(ids), "Once upon a time");
  EXPECT_EQ(sp.piece_to_id(sp.id_to_piece(403)), 403);
  EXPECT_EQ(sp.piece_to_id("no such piece in this vocabulary"), std::nullopt);
  EXPECT_THROW(sp.decode({600}), Error);
  EXPECT_THROW(sp.id_to_piece(-1), Error);
}

TEST(SentencePiece, RejectsInvalidUtf8AndBadFiles) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "models/stories260K");
  SentencePieceTokenizer sp(dir + "/tokenizer.model");
  try {
    sp.encode(
        std::string("ab\xff"
                    "cd"));
    FAIL() << "invalid UTF-8 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid UTF-8 at byte 2"), std::string::npos) << e.what();
  }
  test::TempDir tmp;
  const std::string bogus = tmp / "tokenizer.model";
  std::ofstream(bogus) << "this is not a sentencepiece model";
  try {
    SentencePieceTokenizer bad(bogus);
    FAIL() << "garbage model accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(bogus), std::string::npos) << e.what();
  }
  EXPECT_THROW(SentencePieceTokenizer(tmp / "missing.model"), Error);
  EXPECT_THROW(load_tokenizer(tmp / "weights.bin"), Error);
  EXPECT_THROW(load_tokenizer(tmp.path()), Error);  // a folder with no tokenizer in it
}

}  // namespace
}  // namespace kvrag
