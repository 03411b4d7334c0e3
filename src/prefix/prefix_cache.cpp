#include "prefix/prefix_cache.h"

namespace kvrag {

PrefixCache::PrefixCache(int64_t capacity_bytes) : capacity_(capacity_bytes) {}

std::optional<KVPrefix> PrefixCache::get(int64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = where_.find(id);
  if (it == where_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  order_.splice(order_.begin(), order_, it->second);
  return it->second->prefix;
}

void PrefixCache::put(int64_t id, const KVPrefix& prefix) {
  int64_t bytes = 0;
  for (const auto* v : {&prefix.keys, &prefix.values}) {
    for (const auto& t : *v) bytes += t.numel() * static_cast<int64_t>(t.element_size());
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (bytes > capacity_ || where_.count(id) > 0) return;
  order_.push_front({id, prefix, bytes});
  where_[id] = order_.begin();
  bytes_ += bytes;
  while (bytes_ > capacity_) {
    bytes_ -= order_.back().bytes;
    where_.erase(order_.back().id);
    order_.pop_back();
  }
}

PrefixCacheStats PrefixCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {hits_, misses_, static_cast<int64_t>(order_.size()), bytes_, capacity_};
}

}  // namespace kvrag
