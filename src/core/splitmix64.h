// splitmix64 (Steele, Lea and Flood, 2014): a tiny generator whose output is the same on every
// platform and standard library (std:: distributions are not), and its output mix, a finaliser
// that spreads every input bit over the whole word (hashes, seeds).
#pragma once

#include <cstdint>

namespace kvrag {

// The output mix: a bijection of 64-bit words.
constexpr uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() { return splitmix64_mix(state_ += 0x9E3779B97F4A7C15ULL); }
  // Uniform in [0, 1), 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

}  // namespace kvrag
