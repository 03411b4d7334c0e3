#include "core/json_excerpt.h"

#include <gtest/gtest.h>

#include <string>

namespace kvrag {
namespace {

using nlohmann::json;

TEST(JsonExcerpt, ScalarsAndShortFlatArraysAreShownWhole) {
  EXPECT_EQ(json_excerpt(json(3)), "3");
  EXPECT_EQ(json_excerpt(json("abc")), "\"abc\"");
  EXPECT_EQ(json_excerpt(json(nullptr)), "null");
  EXPECT_EQ(json_excerpt(json::array({2, 3, "x"})), "[2, 3, \"x\"]");
}

TEST(JsonExcerpt, ContainersAreNamedNotDescended) {
  EXPECT_EQ(json_excerpt(json::array({json::array({1})})), "an array of 1 item");
  EXPECT_EQ(json_excerpt(json::object({{"a", 1}, {"b", 2}})), "an object of 2 members");
  EXPECT_EQ(json_excerpt(json(std::vector<int>(40, 0))), "an array of 40 items");
}

// dump() recursed once per level: 100,000 levels overflowed the stack (found by fuzzing the
// safetensors header).
TEST(JsonExcerpt, DeepValuesCostNothing) {
  const size_t depth = 100000;
  const json deep = json::parse(std::string(depth, '[') + std::string(depth, ']'));
  EXPECT_EQ(json_excerpt(deep), "an array of 1 item");
}

// dump() throws a JSON type error on strings that are not UTF-8 (parsed JSON is always valid;
// strings a program builds, from a corpus line say, need not be).
TEST(JsonExcerpt, InvalidUtf8IsReplacedNotThrown) {
  EXPECT_EQ(json_excerpt(json(std::string("a\xff"))), "\"a\xEF\xBF\xBD\"");
}

TEST(JsonExcerpt, LongTextIsCutAtACharacterBoundary) {
  // The quote and three 2-byte characters fit in 8 bytes; the fourth would be split.
  EXPECT_EQ(json_excerpt(json("ééééééééééééééé"), 8), "\"ééé…");
  EXPECT_EQ(json_excerpt(json("short"), 8), "\"short\"");
}

}  // namespace
}  // namespace kvrag
