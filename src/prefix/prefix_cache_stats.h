// The counts of a PrefixCache (prefix/prefix_cache.h), torch-free for qa/answerer.h and the
// server's health report.
#pragma once

#include <cstdint>

namespace kvrag {

struct PrefixCacheStats {
  int64_t hits = 0, misses = 0;  // segments found / encoded since the start
  int64_t entries = 0, bytes = 0, capacity_bytes = 0;
};

}  // namespace kvrag
