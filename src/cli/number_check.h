// Checks of numeric options with errors that say what is wanted. CLI11's PositiveNumber and
// NonNegativeNumber name DBL_MAX in theirs ("Value -1 not in range 0.000000 to 17976931348…",
// 300 digits), so kvrag uses these instead.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace kvrag::cli {

// `text` as a number (a threshold: any sign, "inf" and "-inf" too); Error naming `option`.
inline double parse_number(const std::string& option, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  KVRAG_CHECK(!text.empty() && end != nullptr && *end == '\0' && v == v,
              "{} must be a number, not \"{}\"", option, text);
  return v;
}

// `positive`: the value must be > 0, else ≥ 0.
inline CLI::Validator number_check(bool positive) {
  return CLI::Validator(
      [positive](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        const bool number = !text.empty() && end != nullptr && *end == '\0';
        if (number && (positive ? v > 0 : v >= 0)) return "";
        return std::string("must be a ") + (positive ? "positive" : "non-negative") +
               " number, not " + text;
      },
      positive ? "POSITIVE" : "NONNEGATIVE");
}

inline const CLI::Validator kPositive = number_check(true);
inline const CLI::Validator kNonNegative = number_check(false);

}  // namespace kvrag::cli
