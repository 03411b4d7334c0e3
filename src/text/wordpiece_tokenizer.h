// WordPiece for BERT uncased (bert-base-uncased, Contriever), id-for-id identical to Hugging
// Face tokenizers' BertNormalizer + BertPreTokenizer + WordPiece + BertProcessing.
#pragma once

#include <string>
#include <unordered_map>
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
  bool strip_accents = true;        // HF: follows lowercase unless set
  bool handle_chinese_chars = true;
  bool clean_text = true;
  int max_input_chars_per_word = 100;
  std::string unk_token = "[UNK]";
  std::string continuing_subword_prefix = "##";
};

struct EncodeOptions {
  bool add_special = true;  // [CLS] … [SEP]
  int max_length = 0;       // > 0: truncate to this many ids, specials included
  bool pad_to_max_length = false;  // pad every row to max_length (else: batch pads to longest)
};

class WordPieceTokenizer final : public Tokenizer {
 public:
  // From a vocab.txt (one token per line, id = line number).
  static std::unique_ptr<WordPieceTokenizer> from_vocab_file(const std::string& path,
                                                             WordPieceOptions options = {});
  // From an HF tokenizer.json whose model is WordPiece (normalizer options are read from it).
  static std::unique_ptr<WordPieceTokenizer> from_tokenizer_json(const std::string& path);

  std::vector<TokenId> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(const std::vector<TokenId>& ids) const override;

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

 private:
  WordPieceTokenizer(std::vector<std::string> vocab, WordPieceOptions options,
                     const std::string& source);

  std::vector<std::string> vocab_;
  std::unordered_map<std::string, TokenId> ids_;
  WordPieceOptions options_;
  TokenId cls_ = -1, sep_ = -1, pad_ = -1, unk_ = -1, mask_ = -1;
};

}  // namespace kvrag
