// A bounded cache of segments' prefixes (the knowledge encoder's output, as a prefix store keeps
// it: prefix/prefix_store.h) for a corpus whose store would not fit: least recently used
// segments leave first once the held prefixes exceed the capacity. Thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "model/llama.h"
#include "prefix/prefix_cache_stats.h"

namespace kvrag {

class PrefixCache {
 public:
  explicit PrefixCache(int64_t capacity_bytes);

  // Segment `id`'s prefix (one row: keys/values [1, kvH, P, hd] per layer), counted as a hit, or
  // nullopt, counted as a miss.
  std::optional<KVPrefix> get(int64_t id);
  // Keeps `prefix` (one row) for `id`, evicting the least recently used beyond the capacity; a
  // prefix larger than the whole capacity is not kept.
  void put(int64_t id, const KVPrefix& prefix);
  PrefixCacheStats stats() const;

 private:
  struct Entry {
    int64_t id;
    KVPrefix prefix;
    int64_t bytes;
  };
  mutable std::mutex mutex_;
  int64_t capacity_, bytes_ = 0, hits_ = 0, misses_ = 0;
  std::list<Entry> order_;  // most recently used first
  std::unordered_map<int64_t, std::list<Entry>::iterator> where_;
};

}  // namespace kvrag
