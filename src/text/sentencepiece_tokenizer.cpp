#include "text/sentencepiece_tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>

#include "core/error.h"
#include "text/utf8.h"

namespace kvrag {
namespace {

constexpr const char* kModuleName = "libkvrag_spm.so";
constexpr size_t kErrorSize = 512;

// Function table of libkvrag_spm.so (see sentencepiece_module.cpp for the contract).
struct SpmModule {
  std::string path;
  void* (*load)(const char*, char*, size_t);
  void (*free)(void*);
  int32_t (*vocab_size)(void*);
  int32_t (*special_id)(void*, int);
  int (*encode)(void*, const char*, size_t, int32_t*, size_t, size_t*, char*, size_t);
  int (*decode)(void*, const int32_t*, size_t, char*, size_t, size_t*, char*, size_t);
  size_t (*id_to_piece)(void*, int32_t, char*, size_t);
  int32_t (*piece_to_id)(void*, const char*, size_t);
};

std::vector<std::string> module_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("KVRAG_SPM_MODULE"); env && *env) out.emplace_back(env);
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back((exe.parent_path() / kModuleName).string());
    out.push_back((exe.parent_path() / ".." / "lib" / "kvrag" / kModuleName).string());
  }
  out.push_back(std::string(KVRAG_MODULE_INSTALL_DIR) + "/" + kModuleName);
  return out;
}

template <typename Fn>
void resolve(void* lib, const std::string& path, const char* name, Fn*& fn) {
  fn = reinterpret_cast<Fn*>(dlsym(lib, name));
  KVRAG_CHECK(fn != nullptr, "SentencePiece module {}: missing symbol {}", path, name);
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;  // gcc
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;  // clang
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

const SpmModule& module() {
  static std::once_flag once;
  static SpmModule m;
  static std::string load_error;
  std::call_once(once, [] {
    std::string tried;
    for (const auto& path : module_candidates()) {
      if (!std::filesystem::exists(path)) {
        tried += "\n  " + path + " (not found)";
        continue;
      }
      // RTLD_DEEPBIND: the module and libsentencepiece resolve symbols against their own
      // dependencies first (its protobuf), not against libtorch's already in the process.
      void* lib = dlopen(path.c_str(), SentencePieceTokenizer::module_dlopen_flags());
      if (lib == nullptr) {
        tried += "\n  " + path + " (" + dlerror() + ")";
        continue;
      }
      try {
        m.path = path;
        resolve(lib, path, "kvrag_spm_load", m.load);
        resolve(lib, path, "kvrag_spm_free", m.free);
        resolve(lib, path, "kvrag_spm_vocab_size", m.vocab_size);
        resolve(lib, path, "kvrag_spm_special_id", m.special_id);
        resolve(lib, path, "kvrag_spm_encode", m.encode);
        resolve(lib, path, "kvrag_spm_decode", m.decode);
        resolve(lib, path, "kvrag_spm_id_to_piece", m.id_to_piece);
        resolve(lib, path, "kvrag_spm_piece_to_id", m.piece_to_id);
      } catch (const Error& e) {
        load_error = e.what();
      }
      return;
    }
    load_error = "cannot load the SentencePiece module " + std::string(kModuleName) +
                 " (set KVRAG_SPM_MODULE to its path); tried:" + tried;
  });
  if (!load_error.empty()) throw Error(load_error);
  return m;
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& model_path) {
  const SpmModule& m = module();
  KVRAG_CHECK(std::filesystem::is_regular_file(model_path), "SentencePiece model {}: no such file",
              model_path);
  char error[kErrorSize] = {0};
  handle_ = m.load(model_path.c_str(), error, sizeof(error));
  KVRAG_CHECK(handle_ != nullptr, "SentencePiece model {}: {}", model_path, error);
  vocab_size_ = m.vocab_size(handle_);
  bos_ = m.special_id(handle_, 0);
  eos_ = m.special_id(handle_, 1);
  pad_ = m.special_id(handle_, 2);
  unk_ = m.special_id(handle_, 3);
}

SentencePieceTokenizer::~SentencePieceTokenizer() {
  if (handle_ != nullptr) module().free(handle_);
}

int SentencePieceTokenizer::module_dlopen_flags() {
  // ASan's runtime refuses to load a library with RTLD_DEEPBIND (it would bypass its
  // interceptors); such builds load the module without it and rely on RTLD_LOCAL alone.
  return RTLD_NOW | RTLD_LOCAL | (kAddressSanitizer ? 0 : RTLD_DEEPBIND);
}

std::string SentencePieceTokenizer::module_path() { return module().path; }

std::vector<TokenId> SentencePieceTokenizer::encode(std::string_view text, bool add_special) const {
  // sentencepiece would silently replace invalid bytes; kvrag reports them instead.
  check_utf8(text);
  const SpmModule& m = module();
  std::vector<TokenId> ids(add_special ? 1 : 0, bos_);
  const size_t offset = ids.size();
  ids.resize(offset + text.size() + 8);  // byte-fallback pieces: at most one id per byte
  size_t needed = 0;
  char error[kErrorSize] = {0};
  for (;;) {
    const size_t capacity = ids.size() - offset;
    if (m.encode(handle_, text.data(), text.size(), ids.data() + offset, capacity, &needed, error,
                 sizeof(error)) != 0) {
      fail("SentencePiece encode: {}", error);
    }
    if (needed <= capacity) break;
    ids.resize(offset + needed);
  }
  ids.resize(offset + needed);
  return ids;
}

std::vector<std::vector<TokenId>> SentencePieceTokenizer::encode_batch(
    const std::vector<std::string>& texts, bool add_special) const {
  std::vector<std::vector<TokenId>> out;
  out.reserve(texts.size());
  for (const auto& t : texts) out.push_back(encode(t, add_special));
  return out;
}

std::string SentencePieceTokenizer::decode(const std::vector<TokenId>& ids) const {
  for (TokenId id : ids) {
    KVRAG_CHECK(id >= 0 && id < vocab_size_, "SentencePiece decode: id {} outside [0, {})", id,
                vocab_size_);
  }
  const SpmModule& m = module();
  std::string text(ids.size() * 8 + 16, '\0');
  size_t needed = 0;
  char error[kErrorSize] = {0};
  for (;;) {
    if (m.decode(handle_, ids.data(), ids.size(), text.data(), text.size(), &needed, error,
                 sizeof(error)) != 0) {
      fail("SentencePiece decode: {}", error);
    }
    if (needed <= text.size()) break;
    text.resize(needed);
  }
  text.resize(needed);
  return text;
}

int32_t SentencePieceTokenizer::vocab_size() const { return vocab_size_; }

std::string SentencePieceTokenizer::id_to_piece(TokenId id) const {
  KVRAG_CHECK(id >= 0 && id < vocab_size_, "SentencePiece: id {} outside [0, {})", id, vocab_size_);
  std::string piece(64, '\0');
  size_t n = module().id_to_piece(handle_, id, piece.data(), piece.size());
  if (n > piece.size()) {
    piece.resize(n);
    n = module().id_to_piece(handle_, id, piece.data(), piece.size());
  }
  piece.resize(n);
  return piece;
}

std::optional<TokenId> SentencePieceTokenizer::piece_to_id(std::string_view piece) const {
  const int32_t id = module().piece_to_id(handle_, piece.data(), piece.size());
  if (id < 0) return std::nullopt;
  return id;
}

}  // namespace kvrag
