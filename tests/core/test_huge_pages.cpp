// advise_huge_pages (core/huge_pages.h): the advised range becomes eligible for transparent huge
// pages, as /proc/self/smaps reports ("THPeligible"), wherever the kernel's THP setting is
// "madvise" or "always"; odd arguments are ignored.

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

// THPeligible of the mapping holding `address` in /proc/self/smaps: 1, 0, or -1 where not found.
int thp_eligible(uintptr_t address) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= address && address < hi;
    } else if (inside && line.rfind("THPeligible:", 0) == 0) {
      return std::stoi(line.substr(12));
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
  if (setting == "madvise") EXPECT_EQ(thp_eligible(inner), 0) << "eligible before advice";
  advise_huge_pages(block, kBytes);
  const int eligible = thp_eligible(inner);
  if (eligible == -1) {
    std::free(block);
    GTEST_SKIP() << "this kernel's smaps has no THPeligible line";
  }
  EXPECT_EQ(eligible, 1);
  std::memset(block, 1, kBytes);  // still ordinary memory
  EXPECT_EQ(static_cast<unsigned char*>(block)[kBytes - 1], 1);
  std::free(block);
}

TEST(HugePages, OddArgumentsAreIgnored) {
  advise_huge_pages(nullptr, size_t{1} << 30);
  char small[64] = {};
  advise_huge_pages(small, sizeof small);  // under 4 MiB: left alone
  small[0] = 1;
  EXPECT_EQ(small[0], 1);
}

}  // namespace
}  // namespace kvrag
