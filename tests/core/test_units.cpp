// parse_bytes (core/units.h): the sizes --max-ram accepts, and errors that name the flag.
#include <gtest/gtest.h>

#include <string>

#include "core/units.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

TEST(Units, ParseBytes) {
  EXPECT_EQ(parse_bytes("1000000", "--max-ram"), 1000000);
  EXPECT_EQ(parse_bytes("17B", "--max-ram"), 17);
  EXPECT_EQ(parse_bytes("64k", "--max-ram"), 64 * 1024);
  EXPECT_EQ(parse_bytes("512M", "--max-ram"), int64_t{512} << 20);
  EXPECT_EQ(parse_bytes("512MB", "--max-ram"), int64_t{512} << 20);
  EXPECT_EQ(parse_bytes("2G", "--max-ram"), int64_t{2} << 30);
  EXPECT_EQ(parse_bytes("1.5GiB", "--max-ram"), int64_t{3} << 29);
  EXPECT_EQ(parse_bytes("1.5gib", "--max-ram"), int64_t{3} << 29);
  EXPECT_EQ(parse_bytes("2T", "--max-ram"), int64_t{2} << 40);
}

TEST(Units, ParseBytesErrorsNameTheFlagAndTheText) {
  EXPECT_EQ(test::error_of([] { parse_bytes("lots", "--max-ram"); }),
            "--max-ram: 'lots' is not a size (e.g. 2G, 512M)");
  EXPECT_EQ(test::error_of([] { parse_bytes("2X", "--budget"); }),
            "--budget: unknown unit in '2X' (use K, M, G or T)");
  EXPECT_EQ(test::error_of([] { parse_bytes("2GG", "--max-ram"); }),
            "--max-ram: unknown unit in '2GG' (use K, M, G or T)");
  EXPECT_EQ(test::error_of([] { parse_bytes("0", "--max-ram"); }),
            "--max-ram: '0' is out of range");
  EXPECT_EQ(test::error_of([] { parse_bytes("-1G", "--max-ram"); }),
            "--max-ram: '-1G' is out of range");
  EXPECT_EQ(test::error_of([] { parse_bytes("9000000T", "--max-ram"); }),
            "--max-ram: '9000000T' is out of range");
}

TEST(Units, FormatAndParseAgree) {
  EXPECT_EQ(format_bytes(parse_bytes("1.5G", "--max-ram")), "1.5 GiB");
  EXPECT_EQ(format_bytes(parse_bytes("312K", "--max-ram")), "312.0 KiB");
}

}  // namespace
}  // namespace kvrag
