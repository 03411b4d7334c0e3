// WordPiece for BERT uncased (bert-base-uncased, Contriever), id-for-id identical to Hugging
// Face tokenizers' BertNormalizer + BertPreTokenizer + WordPiece + BertProcessing.
//
// The pipeline, for one text:
//   1. the text is decoded to code points (invalid UTF-8 throws Error);
//   2. added tokens that match the raw text ([CLS], [SEP], [MASK], … — normalized: false in HF)
//      are cut out and become tokens of their own;
//   3. every other piece is normalized (BertNormalizer: clean text, pad CJK ideographs with
//      spaces, NFD + drop nonspacing marks, lowercase), each normalized character remembering
//      the input character it came from; added tokens with normalized: true are cut out here;
//   4. pre-tokenization splits on whitespace and isolates punctuation (BertPreTokenizer);
//   5. each word is split greedily, longest match first, into vocabulary pieces (WordPiece);
//   6. [CLS] … [SEP] are added (BertProcessing), then truncation and padding as asked.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "text/tokenizer.h"

namespace kvrag {

// One encoded text, HF-style. Offsets are [begin, end) in Unicode code points of the input;
// special and padding tokens get (0, 0).
struct Encoding {
  std::vector<TokenId> ids;
  std::vector<TokenId> type_ids;
  std::vector<int32_t> attention_mask;
  std::vector<std::pair<int32_t, int32_t>> offsets;
  std::vector<std::string> tokens;
};

struct WordPieceOptions {
  bool lowercase = true;
  bool strip_accents = true;  // HF: follows lowercase unless set
  bool handle_chinese_chars = true;
  bool clean_text = true;
  int max_input_chars_per_word = 100;
  std::string unk_token = "[UNK]";
  std::string continuing_subword_prefix = "##";
  bool decode_cleanup = true;  // HF WordPiece decoder: " ." → ".", " n't" → "n't", …
};

struct EncodeOptions {
  bool add_special = true;         // [CLS] … [SEP]
  int max_length = 0;              // > 0: truncate to this many ids, specials included
  bool pad_to_max_length = false;  // pad every row to max_length (else: batch pads to longest)
};

class WordPieceTokenizer final : public Tokenizer {
 public:
  // From a vocab.txt (one token per line, id = line number). [PAD], [UNK], [CLS] and [SEP] must
  // be in it; they and [MASK] (if present) are the special tokens.
  static std::unique_ptr<WordPieceTokenizer> from_vocab_file(const std::string& path,
                                                             WordPieceOptions options = {});
  // From an HF tokenizer.json whose model is WordPiece (normalizer options are read from it).
  static std::unique_ptr<WordPieceTokenizer> from_tokenizer_json(const std::string& path);

  ~WordPieceTokenizer() override;
  WordPieceTokenizer(const WordPieceTokenizer&) = delete;
  WordPieceTokenizer& operator=(const WordPieceTokenizer&) = delete;

  std::vector<TokenId> encode(std::string_view text, bool add_special = true) const override;
  // HF decode(ids, skip_special_tokens=True) with the WordPiece decoder: special tokens (all of
  // [CLS] [SEP] [PAD] [UNK] [MASK], as in HF) and ids outside the vocabulary are skipped.
  std::string decode(const std::vector<TokenId>& ids) const override;

  // Throws Error if max_length is smaller than the number of special tokens, or if
  // pad_to_max_length is set without max_length.
  Encoding encode_full(std::string_view text, const EncodeOptions& options = {}) const;
  // Batch: each row truncated as in encode_full, then padded to the longest row (or to
  // max_length with pad_to_max_length) with [PAD], mask 0.
  std::vector<Encoding> encode_batch(const std::vector<std::string>& texts,
                                     const EncodeOptions& options = {}) const;

  int32_t vocab_size() const override { return static_cast<int32_t>(vocab_.size()); }
  std::string id_to_piece(TokenId id) const override;
  std::optional<TokenId> piece_to_id(std::string_view piece) const override;
  TokenId bos_id() const override { return cls_; }
  TokenId eos_id() const override { return sep_; }
  TokenId pad_id() const override { return pad_; }
  TokenId unk_id() const override { return unk_; }
  TokenId cls_id() const { return cls_; }
  TokenId sep_id() const { return sep_; }
  TokenId mask_id() const { return mask_; }
  const WordPieceOptions& options() const { return options_; }

 private:
  // A token HF keeps outside the model ("added_tokens"): matched in the text before the model
  // sees it. The matching machinery lives in wordpiece_tokenizer.cpp.
  struct AddedToken {
    std::string content;
    TokenId id = -1;
    bool special = true;
    bool normalized = false;
    bool lstrip = false, rstrip = false, single_word = false;
  };
  struct AddedMatcher;
  struct Worker;

  WordPieceTokenizer();
  // Validates the vocabulary, looks up the special ids and builds the added-token matchers.
  // `source` names the file in error messages.
  void finish(std::vector<AddedToken> added, const std::string& source);

  // The ids (and offsets, when `offsets` is not null) of `text` without [CLS]/[SEP].
  void tokenize(std::string_view text, std::vector<TokenId>& ids,
                std::vector<std::pair<int32_t, int32_t>>* offsets) const;
  bool is_special(TokenId id) const;

  std::vector<std::string> vocab_;                // id → piece (model vocab and added tokens)
  std::unordered_map<std::string, TokenId> ids_;  // piece → id, the WordPiece model's vocab
  WordPieceOptions options_;
  std::vector<AddedToken> added_;
  std::unique_ptr<AddedMatcher> raw_matcher_;         // added tokens with normalized = false
  std::unique_ptr<AddedMatcher> normalized_matcher_;  // added tokens with normalized = true
  std::vector<bool> special_;                         // by id: skipped by decode
  size_t max_piece_bytes_ = 0;  // longest vocab entry, bounds the greedy search
  bool add_cls_sep_ = true;     // false where tokenizer.json has no processor
  TokenId cls_ = -1, sep_ = -1, pad_ = -1, unk_ = -1, mask_ = -1;
};

}  // namespace kvrag
