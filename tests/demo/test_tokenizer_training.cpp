// Training the demo's tokenizers: SentencePiece inside the isolated module (in this process,
// which also has libtorch loaded) and a WordPiece vocabulary for the retriever.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/atomic_file.h"
#include "demo/world.h"
#include "prefix/prompt.h"
#include "support/test_support.h"
#include "text/knowledge_tokenizer.h"
#include "text/segmenter.h"
#include "text/sentencepiece_trainer.h"
#include "text/tokenizer.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {
namespace {

std::vector<std::string> sample_texts() {
  WorldOptions o;
  o.people = 150;
  o.organisations = 40;
  o.inventions = 40;
  o.cities = 20;
  o.countries = 5;
  const World w = generate_world(o);
  std::vector<std::string> out;
  for (const auto& d : w.documents) out.push_back(d.text);
  for (const auto& q : w.test_questions) out.push_back(q.question);
  return out;
}

// DIR/input.txt: the texts, one per line.
void write_input(const test::TempDir& dir, const std::vector<std::string>& texts) {
  std::string input;
  for (const auto& t : texts) input += t + "\n";
  write_file_atomic(dir / "input.txt", input);
}

TEST(SentencePieceTraining, TrainedModelLoadsRoundTripsAndIsDeterministic) {
  test::TempDir dir;
  const auto texts = sample_texts();
  write_input(dir, texts);
  SentencePieceTrainOptions o;
  o.vocab_size = 600;  // 256 byte pieces, the characters, then merges
  train_sentencepiece(dir / "input.txt", dir / "a.model", o);
  train_sentencepiece(dir / "input.txt", dir / "b.model", o);
  EXPECT_EQ(read_file(dir / "a.model"), read_file(dir / "b.model"));

  auto tok = load_tokenizer(dir / "a.model");
  EXPECT_EQ(tok->vocab_size(), 600);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), 3);
  const torch::Tensor t = torch::ones({2});  // libtorch is alive in this process
  EXPECT_EQ(t.sum().item<float>(), 2.0f);
  for (size_t i = 0; i < texts.size(); i += 17) {
    const auto ids = tok->encode(texts[i]);
    EXPECT_EQ(tok->decode(ids), texts[i]);
    EXPECT_LT(ids.size(), texts[i].size());  // pieces, not characters
  }
  // Byte fallback: text outside the training characters still round-trips.
  EXPECT_EQ(tok->decode(tok->encode("Zürich {}\n~")), "Zürich {}\n~");
  // No dummy prefix: prompt and target encode to the ids of their concatenation.
  const std::string prompt = question_prompt("When was Kola Dren born?"),
                    target = answer_target("1873");
  auto joined = tok->encode(prompt);
  const auto tail = tok->encode(target, false);
  auto separate = joined;
  joined = tok->encode(prompt + target);
  separate.insert(separate.end(), tail.begin(), tail.end());
  EXPECT_EQ(joined, separate);
}

TEST(SentencePieceTraining, BadInputNamesTheFile) {
  test::TempDir dir;
  EXPECT_NE(test::error_of([&] {
              train_sentencepiece(dir / "nope.txt", dir / "m.model");
            }).find("nope.txt"),
            std::string::npos);
  write_file_atomic(dir / "in.txt", "a b c\n");
  SentencePieceTrainOptions o;
  o.model_type = "word-salad";
  EXPECT_NE(test::error_of([&] {
              train_sentencepiece(dir / "in.txt", dir / "m.model", o);
            }).find("model_type"),
            std::string::npos);
}

TEST(WordPieceVocab, EncodesTheCorpusWithoutUnknownsInFewPieces) {
  test::TempDir dir;
  const auto texts = sample_texts();
  WordPieceVocabOptions o;
  o.vocab_size = 800;
  build_wordpiece_vocab(texts, dir / "vocab.txt", o);
  build_wordpiece_vocab(texts, dir / "vocab2.txt", o);
  EXPECT_EQ(read_file(dir / "vocab.txt"), read_file(dir / "vocab2.txt"));
  auto tok = WordPieceTokenizer::from_vocab_file(dir / "vocab.txt");
  EXPECT_LE(tok->vocab_size(), 800);
  EXPECT_GT(tok->vocab_size(), 400);
  EXPECT_EQ(tok->id_to_piece(0), "[PAD]");
  size_t pieces = 0, words = 0;
  for (const auto& t : texts) {
    const auto ids = tok->encode(t, false);
    for (auto id : ids) EXPECT_NE(id, tok->unk_id()) << t;
    pieces += ids.size();
    words += std::count(t.begin(), t.end(), ' ') + 1;
  }
  EXPECT_LT(pieces, words * 2);  // frequent words whole, names in a few pieces
  const auto ids = tok->encode("the engine was invented", false);
  EXPECT_EQ(tok->decode(ids), "the engine was invented");
}

// A SentencePiece model (600 pieces) trained on `texts` in DIR and the WordPiece vocabulary made
// from its pieces.
std::pair<std::unique_ptr<Tokenizer>, std::unique_ptr<WordPieceTokenizer>> piece_tokenizers(
    const test::TempDir& dir, const std::vector<std::string>& texts) {
  write_input(dir, texts);
  SentencePieceTrainOptions so;
  so.vocab_size = 600;
  train_sentencepiece(dir / "input.txt", dir / "sp.model", so);
  auto sp = load_tokenizer(dir / "sp.model");
  std::vector<std::string> pieces;
  for (int32_t id = 0; id < sp->vocab_size(); ++id) pieces.push_back(sp->id_to_piece(id));
  build_wordpiece_vocab_from_pieces(texts, pieces, dir / "vocab.txt");
  return {std::move(sp), WordPieceTokenizer::from_vocab_file(dir / "vocab.txt")};
}

// The vocabulary made from a SentencePiece model's pieces cuts words (lowercased) into the same
// pieces as that model in most cases: what lets the demo's knowledge encoder spell out names.
TEST(WordPieceVocab, FromSentencePiecePiecesCutsWordsLikeTheModel) {
  test::TempDir dir;
  const auto texts = sample_texts();
  const auto [sp, wp] = piece_tokenizers(dir, texts);
  EXPECT_EQ(wp->id_to_piece(0), "[PAD]");
  EXPECT_FALSE(wp->piece_to_id("<0x0A>").has_value());
  EXPECT_FALSE(wp->piece_to_id("<s>").has_value());
  int same = 0, words = 0;
  for (size_t i = 0; i < texts.size(); i += 7) {
    for (auto id : wp->encode(texts[i], false)) EXPECT_NE(id, wp->unk_id()) << texts[i];
    std::istringstream in(texts[i]);
    std::string word;
    while (in >> word) {
      if (!std::isalpha(static_cast<unsigned char>(word[0])) ||
          !std::isalpha(static_cast<unsigned char>(word.back())))
        continue;
      // the SentencePiece pieces of " word", lowercased, in WordPiece notation
      std::string expected;
      for (auto id : sp->encode(" " + word, false)) {
        std::string piece = sp->id_to_piece(id);
        if (piece.rfind("\xe2\x96\x81", 0) == 0)
          piece = piece.substr(3);
        else
          piece = "##" + piece;
        for (auto& c : piece) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (piece != "##" && !piece.empty()) expected += piece + " ";
      }
      std::string got;
      for (auto id : wp->encode(word, false)) got += wp->id_to_piece(id) + " ";
      same += got == expected;
      ++words;
    }
  }
  ASSERT_GT(words, 100);
  std::printf("words cut as SentencePiece does: %d of %d\n", same, words);
  EXPECT_GT(same, words * 8 / 10);
}

// The knowledge encoder's "llm" cut: one entry per SentencePiece piece, each the WordPiece
// token spelled like it; "encoder": exactly the retriever's WordPiece ids of the segment.
TEST(KnowledgeTokenizer, CutsASegmentIntoTheLlmsPieces) {
  test::TempDir dir;
  const auto texts = sample_texts();
  const auto [sp, wp] = piece_tokenizers(dir, texts);
  const KnowledgeTokenizer by_llm(*wp, sp.get()), by_encoder(*wp);
  EXPECT_TRUE(by_llm.reads_llm_pieces());
  EXPECT_FALSE(by_encoder.reads_llm_pieces());

  const std::string title = "Kola Dren", text = texts[3] + " In 1873, (Kola) left.";
  const auto t = by_llm.encode(title, text, 1000);
  EXPECT_FALSE(t.truncated);
  std::vector<int64_t> want = {-1};  // [CLS] title [SEP] text [SEP]
  for (auto id : sp->encode(title, false)) want.push_back(id);
  want.push_back(-1);
  for (auto id : sp->encode(text, false)) want.push_back(id);
  want.push_back(-1);
  ASSERT_EQ(t.llm_ids, want);
  ASSERT_EQ(t.ids.size(), want.size());
  EXPECT_EQ(t.ids.front(), wp->cls_id());
  EXPECT_EQ(t.ids.back(), wp->sep_id());
  EXPECT_EQ(t.ids[sp->encode(title, false).size() + 1], wp->sep_id());
  int unknown = 0;
  bool after_break = true;  // first piece, or after a bare "▁" / punctuation: a word start
  for (size_t j = 1; j + 1 < want.size(); ++j) {
    if (want[j] < 0) {
      after_break = true;
      continue;
    }
    const std::string piece = sp->id_to_piece(static_cast<TokenId>(want[j]));
    const bool start = piece.rfind("\xe2\x96\x81", 0) == 0;
    std::string body = start ? piece.substr(3) : piece;
    for (auto& c : body) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const bool punct = !body.empty() && std::all_of(body.begin(), body.end(), [](char c) {
      return std::ispunct(static_cast<unsigned char>(c));
    });
    if (t.ids[j] == wp->unk_id()) {
      ++unknown;
      EXPECT_TRUE(body.empty() || piece.front() == '<') << piece;  // a bare "▁" or a byte piece
    } else {
      EXPECT_EQ(wp->id_to_piece(static_cast<TokenId>(t.ids[j])),
                (start || after_break || punct ? "" : "##") + body)
          << "entry " << j << ": " << piece;
    }
    after_break = body.empty() || punct;
  }
  // only bare "▁"s (before numbers, brackets)
  EXPECT_LT(unknown * 10, static_cast<int>(want.size()));

  // Truncated: [CLS] kept, [SEP] last, no piece on it.
  const auto cut = by_llm.encode(title, text, 6);
  EXPECT_TRUE(cut.truncated);
  ASSERT_EQ(cut.ids.size(), 6u);
  EXPECT_EQ(cut.ids.back(), wp->sep_id());
  EXPECT_EQ(cut.llm_ids.back(), -1);
  EXPECT_EQ(std::vector<int64_t>(cut.llm_ids.begin(), cut.llm_ids.begin() + 5),
            std::vector<int64_t>(want.begin(), want.begin() + 5));

  // The encoder's own cut: the retriever's ids of "title [SEP] text", no pieces.
  const auto e = by_encoder.encode(title, text, 1000);
  Segment s;
  s.title = title;
  s.text = text;
  const auto ids = wp->encode(encoder_input(s, true), true);
  EXPECT_EQ(e.ids, std::vector<int64_t>(ids.begin(), ids.end()));
  EXPECT_TRUE(e.llm_ids.empty());
  EXPECT_NE(test::error_of([&] { by_llm.encode(title, text, 1); }).find("at least 2"),
            std::string::npos);
}

}  // namespace
}  // namespace kvrag
