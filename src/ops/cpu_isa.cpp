#include "ops/cpu_isa.h"

#include <atomic>

#include "core/error.h"

namespace kvrag {
namespace {

CpuIsa detect() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma")) {
    if (!__builtin_cpu_supports("avx512vnni")) return CpuIsa::kAvx512;
    return __builtin_cpu_supports("avx512bf16") ? CpuIsa::kAvx512Bf16 : CpuIsa::kAvx512Vnni;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
#endif
  return CpuIsa::kGeneric;
}

std::atomic<CpuIsa>& current() {
  static std::atomic<CpuIsa> isa{best_cpu_isa()};
  return isa;
}

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kGeneric:
      return "generic";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx512Vnni:
      return "avx512vnni";
    case CpuIsa::kAvx512Bf16:
      return "avx512bf16";
  }
  return "unknown";
}

CpuIsa best_cpu_isa() {
  static const CpuIsa best = detect();
  return best;
}

CpuIsa cpu_isa() { return current().load(std::memory_order_relaxed); }

CpuIsa set_cpu_isa(CpuIsa isa) {
  KVRAG_CHECK(isa <= best_cpu_isa(), "set_cpu_isa: this CPU supports up to {}, not {}",
              cpu_isa_name(best_cpu_isa()), cpu_isa_name(isa));
  return current().exchange(isa);
}

std::string cpu_features() {
  std::string out;
#if defined(__x86_64__)
  auto add = [&](const char* name, bool has) {
    if (has) out += out.empty() ? name : std::string(" ") + name;
  };
  add("avx2", __builtin_cpu_supports("avx2"));
  add("fma", __builtin_cpu_supports("fma"));
  add("f16c", __builtin_cpu_supports("f16c"));
  add("avx512f", __builtin_cpu_supports("avx512f"));
  add("avx512bw", __builtin_cpu_supports("avx512bw"));
  add("avx512vl", __builtin_cpu_supports("avx512vl"));
  add("avx512dq", __builtin_cpu_supports("avx512dq"));
  add("avx512vnni", __builtin_cpu_supports("avx512vnni"));
  add("avx512bf16", __builtin_cpu_supports("avx512bf16"));
  add("amx-bf16", __builtin_cpu_supports("amx-bf16"));
  add("amx-int8", __builtin_cpu_supports("amx-int8"));
#endif
  return out.empty() ? "none detected" : out;
}

std::vector<CpuIsa> supported_cpu_isas() {
  std::vector<CpuIsa> out;
  for (auto isa : {CpuIsa::kGeneric, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Vnni,
                   CpuIsa::kAvx512Bf16}) {
    if (isa <= best_cpu_isa()) out.push_back(isa);
  }
  return out;
}

}  // namespace kvrag
