// Which instruction sets the ops' CPU kernels may use, detected once via cpuid (CTranslate2's
// cpu_isa). Each op picks its kernel from cpu_isa(); tests (and benchmarks) lower it to run the
// paths a less capable CPU would take, on this one.
#pragma once

#include <string>
#include <vector>

namespace kvrag {

// Ordered: each level includes the ones before it.
enum class CpuIsa {
  kGeneric,     // portable C++ only
  kAvx2,        // AVX2 + FMA: linear()'s matrix-vector kernel
  kAvx512,      // AVX-512 BW/VL/DQ: libtorch's oneDNN multiplies bf16 natively (native_bf16_matmul)
  kAvx512Vnni,  // and AVX-512 VNNI (vpdpbusd): q8_matmul's int8 × int8 dot products
  kAvx512Bf16,  // and AVX512_BF16 (vdpbf16ps): linear()'s bf16 matrix-vector kernel. Every CPU
                // with it has VNNI too (Cooper Lake, Sapphire Rapids and later, AMD Zen 4 and 5).
};

// "generic", "avx2", "avx512", "avx512vnni", "avx512bf16".
const char* cpu_isa_name(CpuIsa isa);

// The best level this CPU supports.
CpuIsa best_cpu_isa();

// The level the kernels use: best_cpu_isa() unless lowered by set_cpu_isa().
CpuIsa cpu_isa();

// Makes the kernels use `isa` (at most best_cpu_isa(), else Error) from now on, in every thread;
// returns the previous level. Not meant to change while ops run on other threads.
CpuIsa set_cpu_isa(CpuIsa isa);

// While alive, the kernels use `isa` (as set_cpu_isa); the previous level comes back at scope
// exit. For tests and benchmarks that run each path in turn.
class ScopedCpuIsa {
 public:
  explicit ScopedCpuIsa(CpuIsa isa) : saved_(set_cpu_isa(isa)) {}
  ~ScopedCpuIsa() { set_cpu_isa(saved_); }
  ScopedCpuIsa(const ScopedCpuIsa&) = delete;
  ScopedCpuIsa& operator=(const ScopedCpuIsa&) = delete;

 private:
  CpuIsa saved_;
};

// The instruction-set extensions that matter to the kernels, as cpuid reports them, space-separated
// ("avx2 fma f16c avx512f … amx-int8"), or "none detected". For benchmark and log output, so that
// a figure says which CPU it ran on.
std::string cpu_features();

// Every level this CPU supports, kGeneric first.
std::vector<CpuIsa> supported_cpu_isas();

}  // namespace kvrag
