// The tokenizer interface shared by SentencePiece (LLaMA) and WordPiece (BERT/Contriever).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kvrag {

using TokenId = int32_t;

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The ids the model receives for `text`: with BOS for SentencePiece, with [CLS] … [SEP] for
  // WordPiece; add_special = false leaves them out. Invalid UTF-8 throws Error.
  virtual std::vector<TokenId> encode(std::string_view text, bool add_special = true) const = 0;
  // Text of `ids`; special tokens (BOS/EOS/[CLS]/[SEP]/[PAD]) are skipped.
  virtual std::string decode(const std::vector<TokenId>& ids) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual std::string id_to_piece(TokenId id) const = 0;
  virtual std::optional<TokenId> piece_to_id(std::string_view piece) const = 0;

  // -1 where the tokenizer has no such token.
  virtual TokenId bos_id() const = 0;
  virtual TokenId eos_id() const = 0;
  virtual TokenId pad_id() const = 0;
  virtual TokenId unk_id() const = 0;
};

// Loads by file name: `*.model` → SentencePiece, `vocab.txt`/`*.txt` → WordPiece vocabulary,
// `tokenizer.json` → WordPiece from an HF tokenizer file; a directory is searched for
// tokenizer.model, tokenizer.json, vocab.txt in that order. Throws Error naming the path.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// The file of a WordPiece tokenizer (a retriever's) that `path` names: `path` itself, or
// tokenizer.json, else vocab.txt, in a folder. Error naming the folder if it holds neither.
std::string wordpiece_tokenizer_file(const std::string& path);

// Identifies a tokenizer file by its name and content, "vocab.txt#fnv1a64:<16 hex digits>"
// (FNV-1a of the bytes, core/fingerprint.h): the id survives a moved file but not a changed
// vocabulary. Segment stores record it, so its value must not change. Error naming the file if
// it cannot be read.
std::string tokenizer_id(const std::string& file);

}  // namespace kvrag
