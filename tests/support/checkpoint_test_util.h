// Helpers for the checkpoint tests: raw file writing and error-message expectations.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "core/error.h"

namespace kvrag::test {

// Writes `bytes` to `path` verbatim (no atomicity needed in tests).
inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// A safetensors file from its parts: u64 little-endian header length, header, data. No
// validation, so tests can build malformed files.
inline std::string raw_safetensors(const std::string& header, const std::string& data = "",
                                   uint64_t header_length = UINT64_MAX) {
  uint64_t n = header_length == UINT64_MAX ? header.size() : header_length;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

}  // namespace kvrag::test

// Expects `stmt` to throw kvrag::Error whose message contains every one of the strings given.
#define EXPECT_KVRAG_ERROR(stmt, ...)                                            \
  do {                                                                           \
    try {                                                                        \
      stmt;                                                                      \
      ADD_FAILURE() << "expected kvrag::Error from: " #stmt;                     \
    } catch (const ::kvrag::Error& e_) {                                         \
      const std::string what_ = e_.what();                                       \
      for (const std::string& part_ : std::vector<std::string>{__VA_ARGS__})     \
        EXPECT_NE(what_.find(part_), std::string::npos)                          \
            << "error message: " << what_ << "\n   does not contain: " << part_; \
    }                                                                            \
  } while (0)
