// advise_huge_pages (core/huge_pages.h): the advised range becomes eligible for transparent huge
// pages, as /proc/self/smaps reports ("THPeligible"), wherever the kernel's THP setting is
// "madvise" or "always"; collapse_huge_pages moves written memory into huge pages where the kernel
// can (AnonHugePages), keeping its bytes; odd arguments are ignored.

#include "core/huge_pages.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace kvrag {
namespace {

// The kernel's THP setting: "always", "madvise", "never", or "" where it is not reported.
std::string thp_setting() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(in, line);
  const auto open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos) return "";
  return line.substr(open + 1, close - open - 1);
}

// Field `key` ("THPeligible:", "AnonHugePages:") of the mapping holding `address` in
// /proc/self/smaps, its first number; -1 where not found.
int64_t smaps_field(uintptr_t address, const std::string& key) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= address && address < hi;
    } else if (inside && line.rfind(key, 0) == 0) {
      return std::stoll(line.substr(key.size()));
    }
  }
  return -1;
}

TEST(HugePages, AdvisedRangeBecomesEligible) {
  const std::string setting = thp_setting();
  if (setting != "madvise" && setting != "always") {
    GTEST_SKIP() << "transparent huge pages are '" << setting << "' here: nothing to advise";
  }
  constexpr size_t kBytes = size_t{16} << 20;
  void* block = std::aligned_alloc(size_t{2} << 20, kBytes);
  ASSERT_NE(block, nullptr);
  const auto inner = reinterpret_cast<uintptr_t>(block) + (size_t{4} << 20);
  if (setting == "madvise")
    EXPECT_EQ(smaps_field(inner, "THPeligible:"), 0) << "eligible before advice";
  advise_huge_pages(block, kBytes);
  const int64_t eligible = smaps_field(inner, "THPeligible:");
  if (eligible == -1) {
    std::free(block);
    GTEST_SKIP() << "this kernel's smaps has no THPeligible line";
  }
  EXPECT_EQ(eligible, 1);
  std::memset(block, 1, kBytes);  // still ordinary memory
  EXPECT_EQ(static_cast<unsigned char*>(block)[kBytes - 1], 1);
  std::free(block);
}

// Written in 4 KiB pages (no advice, under "madvise"), then collapsed: the range is in huge pages
// and holds the same bytes. Skipped where the kernel has no MADV_COLLAPSE (before 6.1) or THP is
// not "madvise" (under "always" the pages may be huge from the start; under "never" there are
// none to make).
TEST(HugePages, CollapseMovesWrittenPagesIntoHugePages) {
  if (thp_setting() != "madvise") GTEST_SKIP() << "transparent huge pages are not 'madvise' here";
  constexpr size_t kBytes = size_t{16} << 20;
  auto* block = static_cast<unsigned char*>(std::aligned_alloc(size_t{2} << 20, kBytes));
  ASSERT_NE(block, nullptr);
  for (size_t i = 0; i < kBytes; ++i) block[i] = static_cast<unsigned char>(i * 7 + 3);
  const auto at = reinterpret_cast<uintptr_t>(block);
  const int64_t before = smaps_field(at, "AnonHugePages:");
  collapse_huge_pages(block, kBytes);
  const int64_t after = smaps_field(at, "AnonHugePages:");
  bool same = true;
  for (size_t i = 0; i < kBytes; ++i)
    same = same && block[i] == static_cast<unsigned char>(i * 7 + 3);
  std::free(block);
  EXPECT_TRUE(same);
  if (before == -1 || after <= before) {
    GTEST_SKIP() << "AnonHugePages " << before << " kB → " << after
                 << " kB: this kernel did not collapse (no MADV_COLLAPSE before Linux 6.1)";
  }
  EXPECT_GE(after - before, 8 * 1024) << "kB in huge pages gained, of 16 MiB";
}

TEST(HugePages, OddArgumentsAreIgnored) {
  advise_huge_pages(nullptr, size_t{1} << 30);
  collapse_huge_pages(nullptr, size_t{1} << 30);
  char small[64] = {};
  advise_huge_pages(small, sizeof small);    // under 4 MiB: left alone
  collapse_huge_pages(small, sizeof small);  // no whole huge page inside
  small[0] = 1;
  EXPECT_EQ(small[0], 1);
}

}  // namespace
}  // namespace kvrag
