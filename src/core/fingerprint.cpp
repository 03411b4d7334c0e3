#include "core/fingerprint.h"

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <vector>

#include "core/error.h"

namespace kvrag {

void Fnv1a64::add(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h_ = (h_ ^ p[i]) * kPrime;
}

void Fnv1a64::add_field(std::string_view s) {
  add(s.data(), s.size());
  const char separator = '\0';
  add(&separator, 1);
}

void Fnv1a64::add_words(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h_ = (h_ ^ w) * kPrime;
  }
  for (; i < n; ++i) h_ = (h_ ^ p[i]) * kPrime;
}

void Fnv1a64::add_file_words(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  KVRAG_CHECK(in.good(), "cannot read {}", path);
  // Every read but the last fills the buffer, a multiple of 8 bytes: the words are those of the
  // whole file.
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    add_words(buf.data(), static_cast<size_t>(in.gcount()));
  }
}

std::string Fnv1a64::hex() const { return fmt::format("{:016x}", h_); }

}  // namespace kvrag
