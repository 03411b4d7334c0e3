#include "text/tokenizer.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fingerprint.h"
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
  fail(
      "tokenizer {}: unknown kind (expected a SentencePiece .model, a WordPiece vocab.txt or an HF "
      "tokenizer.json)",
      path);
}

std::string wordpiece_tokenizer_file(const std::string& path) {
  if (!fs::is_directory(path)) return path;
  for (const char* name : {"tokenizer.json", "vocab.txt"}) {
    if (fs::exists(fs::path(path) / name)) return (fs::path(path) / name).string();
  }
  fail("tokenizer: no tokenizer.json or vocab.txt in {}", path);
}

std::string tokenizer_id(const std::string& file) {
  const std::string bytes = read_file(file);
  // Not FNV's offset basis but its first 19 digits (14695981039346656037 → 1469598103934665603):
  // an old slip, kept because segment stores record these ids and compare them on resume.
  Fnv1a64 fnv(1469598103934665603ULL);
  fnv.add(bytes.data(), bytes.size());
  return fmt::format("{}#fnv1a64:{}", fs::path(file).filename().string(), fnv.hex());
}

}  // namespace kvrag
