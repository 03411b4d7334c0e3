// A command-line option whose value is one of an enum's names (core/enum_names.h): the names
// are the choices, the help shows the default by name, and the value arrives parsed.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "core/enum_names.h"

namespace kvrag::cli {

template <typename E>
CLI::Option* add_enum_option(CLI::App* cmd, const std::string& name, E& value,
                             const std::string& help) {
  return cmd->add_option(name, value, help)
      ->transform(CLI::CheckedTransformer(enum_map<E>()))
      ->default_str(enum_name(value));
}

// The same for an option whose default is settled later (e.g. by the workspace): `value` keeps
// its name, and stays "" unless the option is given; the help names the default in words.
template <typename E>
CLI::Option* add_enum_name_option(CLI::App* cmd, const std::string& name, std::string& value,
                                  const std::string& help) {
  std::vector<std::string> names;
  for (const auto& v : EnumNames<E>::values) names.emplace_back(v.name);
  return cmd->add_option(name, value, help)->check(CLI::IsMember(names));
}

}  // namespace kvrag::cli
