// Helpers shared by the test binaries.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/error.h"

namespace kvrag::test {

// The read-only shared material: $KVRAG_SHARED, else ../shared beside the source tree.
// Empty if neither exists (a user's fresh clone).
inline std::string shared_dir() {
  if (const char* env = std::getenv("KVRAG_SHARED"); env && *env) {
    return std::filesystem::is_directory(env) ? std::string(env) : std::string();
  }
  std::filesystem::path p = std::filesystem::path(KVRAG_SOURCE_DIR) / ".." / "shared";
  return std::filesystem::is_directory(p) ? std::filesystem::canonical(p).string() : std::string();
}

// The message of the kvrag::Error `f` throws, or "" if it throws none.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A fresh empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "kvrag-test-XXXXXX").string();
    path_ = mkdtemp(templ.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace kvrag::test

// Skips the current test (saying why) unless ../shared/<rel> exists; sets `var` to its path.
#define KVRAG_SHARED_PATH_OR_SKIP(var, rel)                                        \
  std::string var;                                                                 \
  do {                                                                             \
    std::string root_ = ::kvrag::test::shared_dir();                               \
    if (root_.empty() || !std::filesystem::exists(root_ + "/" + (rel)))            \
      GTEST_SKIP() << "shared material not found (" << (rel)                       \
                   << "): set KVRAG_SHARED or place ../shared beside the project"; \
    var = root_ + "/" + (rel);                                                     \
  } while (0)
