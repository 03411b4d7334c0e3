// kvrag::Error — the one exception type of the project.
//
// Every failure a user can cause (a malformed file, a wrong shape, a missing weight) throws an
// Error whose message names the thing at fault. Code that knows more about where the failure
// happened adds context on the way out, faiss-style:
//
//   try { load(path); } catch (Error& e) { throw e.with_context("checkpoint " + dir); }
//
// what() is then "checkpoint DIR: file X: tensor Y: shape [3] does not match [4]".
//
// An Error of kind kInput says that a request cannot be served as asked (a question too long, a
// top-k that leaves no room): a server answers it with a 4xx status, where any other Error is the
// server's own fault (500).
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace kvrag {

enum class ErrorKind { kOther, kInput };

class Error : public std::exception {
 public:
  explicit Error(std::string message, ErrorKind kind = ErrorKind::kOther)
      : message_(std::move(message)), kind_(kind) {}

  // Prepends "context: " to the message and returns *this, for rethrowing.
  Error& with_context(const std::string& context) {
    message_ = context + ": " + message_;
    return *this;
  }

  const char* what() const noexcept override { return message_.c_str(); }
  ErrorKind kind() const { return kind_; }

 private:
  std::string message_;
  ErrorKind kind_;
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

// The same with an Error of kind kInput: the request cannot be served as asked.
#define KVRAG_CHECK_INPUT(cond, ...)                                                           \
  do {                                                                                         \
    if (!(cond)) throw ::kvrag::Error(::fmt::format(__VA_ARGS__), ::kvrag::ErrorKind::kInput); \
  } while (0)
