#include "core/json_excerpt.h"

#include <fmt/format.h>

namespace kvrag {

namespace {

std::string scalar_text(const nlohmann::json& value) {
  // dump() of a scalar does not recurse; `replace` turns invalid UTF-8 into U+FFFD.
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string cut(std::string text, size_t max_chars) {
  if (text.size() <= max_chars) return text;
  size_t n = max_chars;
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;  // whole chars
  return text.substr(0, n) + "…";
}

bool short_flat_array(const nlohmann::json& value) {
  if (!value.is_array() || value.size() > 16) return false;
  for (const auto& item : value)
    if (item.is_structured()) return false;
  return true;
}

}  // namespace

std::string json_excerpt(const nlohmann::json& value, size_t max_chars) {
  if (short_flat_array(value)) {  // shapes, offsets: worth showing whole
    std::string text = "[";
    for (size_t i = 0; i < value.size(); ++i) text += (i ? ", " : "") + scalar_text(value[i]);
    return cut(text + "]", max_chars);
  }
  if (value.is_array())
    return fmt::format("an array of {} item{}", value.size(), value.size() == 1 ? "" : "s");
  if (value.is_object())
    return fmt::format("an object of {} member{}", value.size(), value.size() == 1 ? "" : "s");
  return cut(scalar_text(value), max_chars);
}

}  // namespace kvrag
