#include "text/tokenizer.h"

#include <filesystem>

#include "core/error.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {

namespace fs = std::filesystem;

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  fs::path p(path);
  if (fs::is_directory(p)) {
    for (const char* name : {"tokenizer.model", "tokenizer.json", "vocab.txt"}) {
      if (fs::exists(p / name)) return load_tokenizer((p / name).string());
    }
    fail("tokenizer: no tokenizer.model, tokenizer.json or vocab.txt in {}", path);
  }
  KVRAG_CHECK(fs::exists(p), "tokenizer {}: no such file", path);
  const std::string ext = p.extension().string();
  if (ext == ".model") return std::make_unique<SentencePieceTokenizer>(path);
  if (ext == ".json") return WordPieceTokenizer::from_tokenizer_json(path);
  if (ext == ".txt") return WordPieceTokenizer::from_vocab_file(path);
  fail("tokenizer {}: unknown kind (expected a SentencePiece .model, a WordPiece vocab.txt or an "
       "HF tokenizer.json)",
       path);
}

}  // namespace kvrag
