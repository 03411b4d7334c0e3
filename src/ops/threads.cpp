#include "ops/threads.h"

#include <sched.h>

#include <cstdlib>
#include <string>
#include <thread>

#include <torch/torch.h>

#include "core/error.h"

namespace kvrag {

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  if (const char* env = std::getenv("KVRAG_THREADS"); env && *env) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    KVRAG_CHECK(end != env && *end == '\0' && n > 0 && n <= 4096,
                "KVRAG_THREADS must be a positive integer, got '{}'", env);
    return static_cast<int>(n);
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int configure_threads(int requested) {
  const int n = resolve_threads(requested);
  at::set_num_threads(n);
  return n;
}

}  // namespace kvrag
