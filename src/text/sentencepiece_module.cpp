// libkvrag_spm.so: libsentencepiece behind a plain C ABI.
//
// libsentencepiece links its own protobuf; loaded into a process that also has libtorch (with
// Debian's libprotobuf) the two register the same descriptors and the process aborts at
// start-up. SentencePieceTokenizer dlopen()s this module with RTLD_LOCAL | RTLD_DEEPBIND, so
// sentencepiece binds to its own protobuf and nothing of it leaks into the global namespace.
// Only the kvrag_spm_* functions below are exported (the target builds with hidden visibility).
//
// Variable-sized results use caller buffers: a call reports the size it needs in *needed and
// writes only if that fits in `capacity`; the caller retries with a larger buffer.

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#define KVRAG_SPM_API extern "C" __attribute__((visibility("default")))

namespace {

void set_error(char* error, size_t error_size, const std::string& message) {
  if (error == nullptr || error_size == 0) return;
  std::snprintf(error, error_size, "%s", message.c_str());
}

sentencepiece::SentencePieceProcessor* processor(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

}  // namespace

// Returns a processor handle, or nullptr with a message in `error`.
// No exception crosses this C boundary: protobuf reports a clash of versions (a module loaded
// without RTLD_DEEPBIND beside libtorch's protobuf, as in sanitizer builds) by throwing.
KVRAG_SPM_API void* kvrag_spm_load(const char* path, char* error, size_t error_size) {
  try {
    auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
    const auto status = sp->Load(path);
    if (!status.ok()) {
      set_error(error, error_size, status.ToString());
      return nullptr;
    }
    return sp.release();
  } catch (const std::exception& e) {
    set_error(error, error_size, e.what());
    return nullptr;
  }
}

KVRAG_SPM_API void kvrag_spm_free(void* handle) { delete processor(handle); }

KVRAG_SPM_API int32_t kvrag_spm_vocab_size(void* handle) {
  return processor(handle)->GetPieceSize();
}

// which: 0 = bos, 1 = eos, 2 = pad, 3 = unk.
KVRAG_SPM_API int32_t kvrag_spm_special_id(void* handle, int which) {
  auto* sp = processor(handle);
  switch (which) {
    case 0:
      return sp->bos_id();
    case 1:
      return sp->eos_id();
    case 2:
      return sp->pad_id();
    default:
      return sp->unk_id();
  }
}

// Encodes text into ids (no BOS/EOS). Returns 0 on success, -1 with `error` set on failure.
KVRAG_SPM_API int kvrag_spm_encode(void* handle, const char* text, size_t text_size, int32_t* ids,
                                   size_t capacity, size_t* needed, char* error,
                                   size_t error_size) {
  std::vector<int> out;
  const auto status = processor(handle)->Encode(std::string_view(text, text_size), &out);
  if (!status.ok()) {
    set_error(error, error_size, status.ToString());
    return -1;
  }
  *needed = out.size();
  if (out.size() <= capacity) std::copy(out.begin(), out.end(), ids);
  return 0;
}

KVRAG_SPM_API int kvrag_spm_decode(void* handle, const int32_t* ids, size_t count, char* text,
                                   size_t capacity, size_t* needed, char* error,
                                   size_t error_size) {
  std::string out;
  const auto status = processor(handle)->Decode(std::vector<int>(ids, ids + count), &out);
  if (!status.ok()) {
    set_error(error, error_size, status.ToString());
    return -1;
  }
  *needed = out.size();
  if (out.size() <= capacity) std::memcpy(text, out.data(), out.size());
  return 0;
}

// The piece of `id` (sentencepiece returns "" for out-of-range ids; callers check the range).
KVRAG_SPM_API size_t kvrag_spm_id_to_piece(void* handle, int32_t id, char* piece, size_t capacity) {
  const std::string& p = processor(handle)->IdToPiece(id);
  if (p.size() <= capacity) std::memcpy(piece, p.data(), p.size());
  return p.size();
}

// The id of `piece`, or -1 if it is not in the vocabulary.
KVRAG_SPM_API int32_t kvrag_spm_piece_to_id(void* handle, const char* piece, size_t size) {
  auto* sp = processor(handle);
  const int id = sp->PieceToId(std::string_view(piece, size));
  if (id == sp->unk_id() && sp->IdToPiece(id) != std::string_view(piece, size)) return -1;
  return id;
}

// Trains a model with SentencePieceTrainer from `count` key/value options (the trainer's flag
// names without "--", e.g. {"input", "lm.txt"}, {"vocab_size", "2000"}) and writes the
// serialized model to `output_path` (the caller renames it into place). Returns 0 on success,
// -1 with `error` set on failure.
KVRAG_SPM_API int kvrag_spm_train(const char* const* keys, const char* const* values, size_t count,
                                  const char* output_path, char* error, size_t error_size) {
  std::unordered_map<std::string, std::string> kwargs;
  for (size_t i = 0; i < count; ++i) kwargs[keys[i]] = values[i];
  std::string model;
  const auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, nullptr, &model);
  if (!status.ok()) {
    set_error(error, error_size, status.ToString());
    return -1;
  }
  std::ofstream out(output_path, std::ios::binary | std::ios::trunc);
  out.write(model.data(), static_cast<std::streamsize>(model.size()));
  out.close();
  if (!out) {
    set_error(error, error_size, std::string("cannot write ") + output_path);
    return -1;
  }
  return 0;
}
