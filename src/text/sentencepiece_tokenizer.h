// SentencePiece (LLaMA's tokenizer.model), through libsentencepiece.
//
// libsentencepiece embeds its own protobuf, which crashes at start-up in a process that also
// loads libtorch. The library is therefore linked only into the module libkvrag_spm.so, which
// this class dlopen()s with RTLD_LOCAL | RTLD_DEEPBIND and calls through a small C ABI
// (src/text/sentencepiece_module.cpp). The module is looked up in $KVRAG_SPM_MODULE, beside the
// running executable, and in the install directory.
#pragma once

#include "text/tokenizer.h"

namespace kvrag {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  // Loads a SentencePiece model file; throws Error naming the path if it is missing or invalid.
  explicit SentencePieceTokenizer(const std::string& model_path);
  ~SentencePieceTokenizer() override;

  std::vector<TokenId> encode(std::string_view text, bool add_special = true) const override;
  std::string decode(const std::vector<TokenId>& ids) const override;
  // Batch encode; the module runs the texts without re-entering this object's lock per text.
  std::vector<std::vector<TokenId>> encode_batch(const std::vector<std::string>& texts,
                                                 bool add_special = true) const;

  int32_t vocab_size() const override;
  std::string id_to_piece(TokenId id) const override;
  std::optional<TokenId> piece_to_id(std::string_view piece) const override;
  TokenId bos_id() const override { return bos_; }
  TokenId eos_id() const override { return eos_; }
  TokenId pad_id() const override { return pad_; }
  TokenId unk_id() const override { return unk_; }

  // The path of the module that was loaded (for diagnostics).
  static std::string module_path();
  // The flags the module is dlopen()ed with: RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND, except in
  // AddressSanitizer builds (fuzz/, scripts/sanitize_tests.sh), which refuse RTLD_DEEPBIND.
  static int module_dlopen_flags();

 private:
  void* handle_ = nullptr;  // the module's processor object
  TokenId bos_ = -1, eos_ = -1, pad_ = -1, unk_ = -1;
  int32_t vocab_size_ = 0;
};

}  // namespace kvrag
