// kvrag::Error — the one exception type of the project.
//
// Every failure a user can cause (a malformed file, a wrong shape, a missing weight) throws an
// Error whose message names the thing at fault. Code that knows more about where the failure
// happened adds context on the way out, faiss-style:
//
//   try { load(path); } catch (Error& e) { throw e.with_context("checkpoint " + dir); }
//
// what() is then "checkpoint DIR: file X: tensor Y: shape [3] does not match [4]".
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace kvrag {

class Error : public std::exception {
 public:
  explicit Error(std::string message) : message_(std::move(message)) {}

  // Prepends "context: " to the message and returns *this, for rethrowing.
  Error& with_context(const std::string& context) {
    message_ = context + ": " + message_;
    return *this;
  }

  const char* what() const noexcept override { return message_.c_str(); }

 private:
  std::string message_;
};

// Throws Error(fmt::format(...)).
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace kvrag

// Throws kvrag::Error with a formatted message unless `cond` holds.
#define KVRAG_CHECK(cond, ...)               \
  do {                                       \
    if (!(cond)) ::kvrag::fail(__VA_ARGS__); \
  } while (0)
