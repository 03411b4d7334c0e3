// Sizes, durations and counts as people write them: formatted for progress lines and reports,
// parsed from command-line flags.
#pragma once

#include <cstdint>
#include <string>

namespace kvrag {

// "1.5 GiB", "312 KiB", "17 B".
std::string format_bytes(int64_t bytes);
// "1h02m", "17m03s", "42s".
std::string format_duration(double seconds);
// 1234567 → "1,234,567".
std::string format_count(int64_t n);

// "2G", "1.5GiB", "512M", "64k", "1000000" → bytes, in binary units (K = 1024); a unit may be
// written K, KB or KiB, in any case. Error starting with `what` (the flag, e.g. "--max-ram")
// for anything else, and for sizes that are not positive or do not fit 63 bits.
int64_t parse_bytes(const std::string& text, const std::string& what);

}  // namespace kvrag
