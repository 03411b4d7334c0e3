// What the hand-written x86 kernels share: the intrinsics (on x86-64 only; KVRAG_X86 says
// whether they are there) and one function attribute per ISA level, which compiles a kernel for
// that level while the rest of its file stays baseline x86-64, so that cpu_isa() (ops/cpu_isa.h)
// chooses among them at run time.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>
#define KVRAG_X86 1
#define KVRAG_AVX2 __attribute__((target("avx2,fma")))
#define KVRAG_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#define KVRAG_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma")))
#else
#define KVRAG_X86 0
#endif
