// Helpers shared by the benchmark programs: argument parsing, timing, deterministic inputs.
//
// Kept header-only so that the CMake glob (every bench/*.cpp becomes a program) needs no change.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/malloc_tuning.h"
#include "ops/cpu_isa.h"

namespace kvrag::bench {

// --name value / --flag arguments. Unknown names are an error so that typos do not silently
// benchmark the default.
class Args {
 public:
  Args(int argc, char** argv, const std::map<std::string, std::string>& defaults,
       const std::vector<std::string>& flags)
      : values_(defaults) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) throw std::runtime_error("unexpected argument: " + a);
      a = a.substr(2);
      if (std::find(flags.begin(), flags.end(), a) != flags.end()) {
        flags_.push_back(a);
      } else if (values_.count(a) != 0) {
        if (i + 1 >= argc) throw std::runtime_error("--" + a + " needs a value");
        values_[a] = argv[++i];
      } else {
        throw std::runtime_error("unknown option --" + a);
      }
    }
  }
  std::string str(const std::string& name) const { return values_.at(name); }
  int64_t integer(const std::string& name) const { return std::stoll(values_.at(name)); }
  bool flag(const std::string& name) const {
    return std::find(flags_.begin(), flags_.end(), name) != flags_.end();
  }

 private:
  std::map<std::string, std::string> values_;
  std::vector<std::string> flags_;
};

// Lowers the kernels' instruction set to the one named (--isa: generic, avx2, …, as cpu_isa_name()
// writes them), to time the paths of a lesser CPU on this one; "" leaves the best.
inline void set_isa(const std::string& name) {
  if (name.empty()) return;
  const auto isas = supported_cpu_isas();
  const auto it =
      std::find_if(isas.begin(), isas.end(), [&](CpuIsa isa) { return name == cpu_isa_name(isa); });
  KVRAG_CHECK(it != isas.end(), "--isa {}: not one this CPU runs (best: {})", name,
              cpu_isa_name(best_cpu_isa()));
  set_cpu_isa(*it);
}

// A benchmark's main(): run(argc, argv), an exception printed as "NAME: what" (exit status 1).
// malloc is tuned as in the kvrag binary (core/malloc_tuning.h), so that both time the same thing.
inline int guarded_main(const char* name, int argc, char** argv, int (*run)(int, char**)) {
  kvrag::tune_malloc();
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
}

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A field of /proc/self/status in bytes ("VmHWM", "VmRSS", "RssAnon", "RssFile"); -1 if absent.
inline int64_t proc_status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1)) * 1024;
  }
  return -1;
}

// Best (smallest) wall time of `repeats` calls of f. The minimum is the least disturbed by other
// work on a shared machine; the Python references use the same statistic.
inline double best_time(int repeats, const std::function<void()>& f) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const double t0 = now_seconds();
    f();
    best = std::min(best, now_seconds() - t0);
  }
  return best;
}

// The benchmark prompt: BOS, then ids spread over the vocabulary. reference_llama.py and
// reference_bert.py compute the same sequence.
inline std::vector<int64_t> bench_ids(int64_t n, int64_t vocab, int64_t first, int64_t salt = 0) {
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) {
    ids[i] = i == 0 && first >= 0 ? first : 3 + ((i + salt) * 7919 + salt * 104729) % (vocab - 3);
  }
  return ids;
}

}  // namespace kvrag::bench
