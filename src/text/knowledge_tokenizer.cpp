#include "text/knowledge_tokenizer.h"

#include <cctype>

#include "core/error.h"
#include "text/segmenter.h"
#include "text/sentencepiece_trainer.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {
namespace {

enum PieceKind : uint8_t { kPlain = 0, kWordStart = 1, kBareSpace = 2, kPunctuation = 3 };

}  // namespace

KnowledgeTokenizer::KnowledgeTokenizer(const WordPieceTokenizer& encoder, const Tokenizer* llm)
    : encoder_(encoder), llm_(llm) {
  if (llm_ == nullptr) return;
  static const std::string kWordStartMark = "\xe2\x96\x81";  // U+2581 "▁"
  const bool lowercase = encoder_.options().lowercase;
  const int32_t V = llm_->vocab_size();
  spelled_.assign(V, -1);
  spelled_inside_.assign(V, -1);
  kind_.assign(V, kPlain);
  const auto lookup = [&](const std::string& spelling) -> int64_t {
    if (spelling.empty() || spelling == "##") return -1;
    const auto id = encoder_.piece_to_id(spelling);
    return id ? *id : -1;
  };
  for (int32_t id = 0; id < V; ++id) {
    const std::string piece = llm_->id_to_piece(id);
    if (piece == kWordStartMark) {
      kind_[id] = kBareSpace;
      continue;
    }
    std::string body = wordpiece_spelling(piece, lowercase);  // "" for byte and control pieces
    if (body.rfind("##", 0) == 0) body = body.substr(2);
    if (body.empty()) continue;
    bool punctuation = true;
    for (unsigned char c : body) punctuation = punctuation && c < 0x80 && std::ispunct(c);
    kind_[id] = punctuation                           ? kPunctuation
                : piece.rfind(kWordStartMark, 0) == 0 ? kWordStart
                                                      : kPlain;
    spelled_[id] = lookup(body);
    spelled_inside_[id] = punctuation ? spelled_[id] : lookup("##" + body);
  }
}

void KnowledgeTokenizer::append_pieces(const std::string& text, KnowledgeTokens& out) const {
  const int64_t unk = encoder_.unk_id();
  bool word_start = true;  // the first piece starts a word
  for (const TokenId id : llm_->encode(text, false)) {
    const bool known = id >= 0 && id < static_cast<TokenId>(kind_.size());
    const uint8_t kind = known ? kind_[id] : uint8_t{kPlain};
    int64_t enc = -1;
    if (known) enc = (word_start || kind == kWordStart) ? spelled_[id] : spelled_inside_[id];
    out.ids.push_back(enc >= 0 ? enc : unk);
    out.llm_ids.push_back(id);
    word_start = kind == kBareSpace || kind == kPunctuation;
  }
}

KnowledgeTokens KnowledgeTokenizer::encode(const std::string& title, const std::string& text,
                                           int64_t max_tokens) const {
  KVRAG_CHECK(max_tokens >= 2,
              "knowledge tokenizer: max tokens must be at least 2 ([CLS] and [SEP]), got {}",
              max_tokens);
  KnowledgeTokens out;
  if (llm_ == nullptr) {
    Segment s;
    s.title = title;
    s.text = text;
    for (const auto id : encoder_.encode(encoder_input(s, true), true)) out.ids.push_back(id);
  } else {
    out.ids.push_back(encoder_.cls_id());
    out.llm_ids.push_back(-1);
    if (!title.empty()) {
      append_pieces(title, out);
      out.ids.push_back(encoder_.sep_id());
      out.llm_ids.push_back(-1);
    }
    append_pieces(text, out);
    out.ids.push_back(encoder_.sep_id());
    out.llm_ids.push_back(-1);
  }
  if (static_cast<int64_t>(out.ids.size()) > max_tokens) {  // keep [CLS] …, end with [SEP]
    out.ids.resize(max_tokens);
    out.ids.back() = encoder_.sep_id();
    if (!out.llm_ids.empty()) {
      out.llm_ids.resize(max_tokens);
      out.llm_ids.back() = -1;
    }
    out.truncated = true;
  }
  return out;
}

}  // namespace kvrag
