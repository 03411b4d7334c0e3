// FNV-1a, 64 bits: the project's one content fingerprint. It detects mix-ups (another encoder,
// LLM or vocabulary), not attacks. Index folders, segment stores and knowledge encoders on users'
// disks store these values, so no update below may ever change what it computes
// (tests/core/test_fingerprint.cpp pins them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvrag {

class Fnv1a64 {
 public:
  static constexpr uint64_t kOffsetBasis = 0xcbf29ce484222325ULL;  // 14695981039346656037

  // `basis`: the start value. Only tokenizer_id (text/tokenizer.h) passes another one, for the
  // values it has always recorded.
  explicit Fnv1a64(uint64_t basis = kOffsetBasis) : h_(basis) {}

  // Standard FNV-1a, byte by byte.
  void add(const void* data, size_t n);
  // The bytes of `s`, then a '\0' separator: fields ("ab", "c") and ("a", "bc") differ.
  void add_field(std::string_view s);

  // The fast variant for large files (a 440 MB BERT in well under a second): each 64-bit word
  // (native byte order) is one step, the tail bytes one step each. Not the standard value, and
  // not the same as add() over the same bytes.
  void add_words(const void* data, size_t n);
  // The file's bytes through add_words, in 1 MiB reads; Error naming the file if unreadable.
  void add_file_words(const std::string& path);

  uint64_t value() const { return h_; }
  std::string hex() const;  // 16 lowercase hex digits

 private:
  static constexpr uint64_t kPrime = 0x100000001b3ULL;
  uint64_t h_;
};

}  // namespace kvrag
