// The WordPiece tokenizer (text/wordpiece_tokenizer.h). The first byte chooses what the rest is:
//   0, 1  text, encoded with bert-base-uncased's vocab.txt from ../shared and decoded again
//   2     a vocab.txt, loaded and used on a fixed sentence
//   3     a tokenizer.json, loaded and used on a fixed sentence
#include <memory>
#include <string>
#include <string_view>

#include "core/error.h"
#include "fuzz_entry.h"
#include "fuzz_support.h"
#include "text/wordpiece_tokenizer.h"

namespace {

void use(const kvrag::Tokenizer& tokenizer, std::string_view text) {
  const auto ids = tokenizer.encode(text);
  for (const auto id : ids) KVRAG_FUZZ_ASSERT(id >= 0 && id < tokenizer.vocab_size());
  (void)tokenizer.decode(ids);
}

const kvrag::WordPieceTokenizer* bert() {
  static const std::unique_ptr<kvrag::WordPieceTokenizer> tokenizer = [] {
    const std::string path = kvrag_fuzz::shared_file("tokenizers/bert-base-uncased/vocab.txt");
    return path.empty() ? nullptr : kvrag::WordPieceTokenizer::from_vocab_file(path);
  }();
  return tokenizer.get();
}

}  // namespace

KVRAG_FUZZ_TARGET {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto* bytes = data + 1;
  try {
    switch (data[0] % 4) {
      case 0:
      case 1:
        if (bert()) use(*bert(), rest);
        break;
      case 2:
        use(*kvrag::WordPieceTokenizer::from_vocab_file(
                kvrag_fuzz::input_file(bytes, size - 1, "-vocab.txt")),
            "Hello, World! naïve café 東京");
        break;
      default:
        use(*kvrag::WordPieceTokenizer::from_tokenizer_json(
                kvrag_fuzz::input_file(bytes, size - 1, "-tokenizer.json")),
            "Hello, World! naïve café 東京");
        break;
    }
  } catch (const kvrag::Error&) {
  }
  return 0;
}
