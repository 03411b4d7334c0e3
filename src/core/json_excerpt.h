// A short, safe rendering of a JSON value for error messages.
//
// nlohmann::json::dump() recurses once per nesting level (a 100,000-deep array from a hostile
// file overflows the stack) and throws on strings that are not UTF-8; an error message about a
// bad value must do neither. json_excerpt() renders scalars (strings with invalid bytes
// replaced, cut to `max_chars`) and names containers by kind and size without descending.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace kvrag {

// "3", "\"abc\"", "null", "[2, 3]" (a flat array of at most 16 scalars), "an array of 40
// items", "an object of 2 members"; text longer than `max_chars` is cut and ends in "…".
std::string json_excerpt(const nlohmann::json& value, size_t max_chars = 80);

}  // namespace kvrag
