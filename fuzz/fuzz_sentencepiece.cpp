// The SentencePiece tokenizer (text/sentencepiece_tokenizer.h, through the libkvrag_spm module)
// on arbitrary text with LLaMA's tokenizer.model from ../shared: encode, check, decode.
#include <memory>
#include <string>
#include <string_view>

#include "core/error.h"
#include "fuzz_entry.h"
#include "fuzz_support.h"
#include "text/sentencepiece_tokenizer.h"

namespace {

const kvrag::SentencePieceTokenizer* llama() {
  static const std::unique_ptr<kvrag::SentencePieceTokenizer> tokenizer = [] {
    const std::string path = kvrag_fuzz::shared_file("tokenizers/llama/tokenizer.model");
    return path.empty() ? nullptr : std::make_unique<kvrag::SentencePieceTokenizer>(path);
  }();
  return tokenizer.get();
}

}  // namespace

KVRAG_FUZZ_TARGET {
  if (!llama()) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto ids = llama()->encode(text, size % 2 == 0);
    for (const auto id : ids) KVRAG_FUZZ_ASSERT(id >= 0 && id < llama()->vocab_size());
    (void)llama()->decode(ids);
  } catch (const kvrag::Error&) {
    // invalid UTF-8 is an Error
  }
  return 0;
}
