// How the knowledge encoder cuts a segment into the tokens of its prefix entries.
//
//   "encoder": the encoder's own WordPiece tokenizer, "[CLS] title [SEP] text [SEP]" exactly as
//              the retriever reads a segment (encoder_input in text/segmenter.h).
//   "llm":     the LLM's SentencePiece tokenizer cuts the title and the text; every LLM piece
//              becomes one encoder token, the WordPiece token spelled like it ("▁Gu" → "gu",
//              "rouk" → "##rouk"; wordpiece_spelling), [UNK] where the vocabulary has none (byte
//              pieces, a bare "▁"). Each entry also keeps its LLM piece id (-1 for [CLS]/[SEP]).
//
// Why "llm": with readout "tokens" the LLM copies an answer out of the prefix one piece at a
// time, each found by the piece before it (knowledge_encoder.h). WordPiece's greedy longest
// match cuts a fourth of the demo's unseen names differently from SentencePiece ("Keithshoutran":
// "k ##eith ##sho ##u ##t ##ran" against the LLM's "K eith sh out ran"), and then the piece the
// LLM must write next is in no entry. Cut by the LLM's tokenizer, entry j holds exactly the LLM's
// piece j, case included.
//
// A piece is a word start (no "##") when it begins with "▁", comes first, or follows a bare "▁"
// or a punctuation piece; punctuation pieces are spelled without "##", as WordPiece isolates
// punctuation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvrag {

class Tokenizer;
class WordPieceTokenizer;

struct KnowledgeTokens {
  std::vector<int64_t> ids;      // encoder ids, [CLS] first, [SEP] last
  std::vector<int64_t> llm_ids;  // "llm": the LLM piece of each entry (-1: none); "encoder": empty
  bool truncated = false;        // cut to max_tokens
};

class KnowledgeTokenizer {
 public:
  // `llm` == nullptr: the "encoder" cut; otherwise "llm". Both must outlive this object.
  KnowledgeTokenizer(const WordPieceTokenizer& encoder, const Tokenizer* llm = nullptr);

  // The segment's tokens, at most `max_tokens` (≥ 2: [CLS] and the text, kept ending with [SEP]).
  // An empty title is left out (no title [SEP]).
  KnowledgeTokens encode(const std::string& title, const std::string& text,
                         int64_t max_tokens) const;

  bool reads_llm_pieces() const { return llm_ != nullptr; }

 private:
  void append_pieces(const std::string& text, KnowledgeTokens& out) const;

  const WordPieceTokenizer& encoder_;
  const Tokenizer* llm_;
  std::vector<int64_t> spelled_;  // LLM id → encoder id of its spelling as a word start (-1: none)
  std::vector<int64_t> spelled_inside_;  // … inside a word
  std::vector<uint8_t> kind_;  // LLM id → 0 plain, 1 starts with "▁", 2 bare "▁", 3 punctuation
};

}  // namespace kvrag
