// Options that take one of a few names ("queries" | "tokens") as enums, parsed once where they
// enter (command line, config.json, request) and named again where they leave.
//
// An enum opts in with a table of its values and names:
//
//   enum class Readout { kQueries, kTokens };
//   template <> struct EnumNames<Readout> {
//     static constexpr const char* what = "readout";
//     static constexpr EnumName<Readout> values[] = {{Readout::kQueries, "queries"},
//     {Readout::kTokens, "tokens"}};
//   };
//
// and then parse_enum<Readout>("tokens"), enum_name(Readout::kTokens) and enum_choices<Readout>()
// (for a command line's choices) all read that one table.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace kvrag {

template <typename E>
struct EnumName {
  E value;
  const char* name;
};

template <typename E>
struct EnumNames;  // specialised next to each enum

// The value named `name`; Error "WHAT must be one of a, b, c, not 'name'" otherwise.
template <typename E>
E parse_enum(std::string_view name) {
  std::string choices;
  for (const auto& v : EnumNames<E>::values) {
    if (name == v.name) return v.value;
    choices += (choices.empty() ? "" : ", ") + std::string(v.name);
  }
  fail("{} must be one of {}, not '{}'", EnumNames<E>::what, choices, name);
}

template <typename E>
const char* enum_name(E value) {
  for (const auto& v : EnumNames<E>::values) {
    if (v.value == value) return v.name;
  }
  return "?";
}

// name → value, in table order of names (CLI11's CheckedTransformer takes such a map).
template <typename E>
std::map<std::string, E> enum_map() {
  std::map<std::string, E> out;
  for (const auto& v : EnumNames<E>::values) out.emplace(v.name, v.value);
  return out;
}

}  // namespace kvrag
