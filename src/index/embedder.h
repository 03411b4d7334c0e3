// The retriever's text encoder: WordPiece tokenizer + BERT/Contriever + pooling, turning texts
// into vectors for inner-product search. Torch stays behind this header.
//
// An encoder folder holds a BERT checkpoint (config.json + safetensors) and its tokenizer
// (vocab.txt or tokenizer.json). config.json may carry "kvrag_pooling": "mean" (Contriever,
// the default) or "cls".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kvrag {

class WordPieceTokenizer;

struct EmbedderOptions {
  std::string dtype = "bf16";   // "fp32", "bf16" or "int8" (weight-only; pooling in fp32)
  int max_length = 0;           // tokens per text incl. [CLS]/[SEP]; 0 = the model's max positions
  int64_t batch_tokens = 8192;  // padded tokens per forward batch (length bucketing fills it)
};

class Embedder {
 public:
  // Loads ENCODER_DIR; Error naming the folder if the checkpoint or tokenizer is missing.
  static std::unique_ptr<Embedder> load(const std::string& encoder_dir,
                                        const EmbedderOptions& options = {});
  ~Embedder();

  int dim() const;
  int max_length() const;
  const std::string& pooling() const;
  const std::string& dir() const { return dir_; }
  // The tokenizer file it reads texts with: DIR/tokenizer.json, else DIR/vocab.txt.
  const std::string& tokenizer_file() const { return tokenizer_file_; }
  // Identifies the weights, tokenizer and pooling: vectors from encoders with different
  // fingerprints must not share an index. 16 hex digits.
  const std::string& fingerprint() const { return fingerprint_; }
  // The passage encoder this one was trained with, as a separate query encoder (config.json's
  // "kvrag_passage_encoder", a folder relative to this one; train-retriever --separate-encoders
  // writes it): an index embedded with that passage encoder accepts this one for its
  // questions. Empty when the encoder is not such a query encoder.
  const std::string& passage_encoder() const { return passage_encoder_; }
  // {"path", "fingerprint", "dim", "pooling", "max_length"} as stored in embeddings/encoder.json.
  nlohmann::json info() const;

  // Vectors of `texts` into out[texts.size() × dim] (float32). Texts are sorted by length and
  // batched up to batch_tokens padded tokens; longer texts are truncated to max_length
  // (`truncated`, if given, receives how many were). Deterministic for the same list.
  void encode(const std::vector<std::string>& texts, float* out,
              int64_t* truncated = nullptr) const;
  // Token count of `text` with specials (for length checks on queries).
  int64_t count_tokens(const std::string& text) const;

 private:
  Embedder() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string dir_, fingerprint_, passage_encoder_, tokenizer_file_;
};

}  // namespace kvrag
