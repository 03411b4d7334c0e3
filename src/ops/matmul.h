// Matrix products: y = x Wᵀ (+ b) for a layer's weight, and a @ b between activations.
//
// dtype rules. Operands are fp32 or bf16, both of one dtype, and the result has that dtype. bf16
// products accumulate in fp32 and are rounded to bf16 once: in the matrix-vector kernel below,
// through fp32 copies of the operands (exact conversions) where libtorch has no fast bf16 matmul,
// and natively through oneDNN. One exception, libtorch's own: with native_bf16_matmul(), a
// product of at most 16³ multiply-adds (batch included) goes to libtorch 1.13's fallback kernel,
// which accumulates in bf16 (error up to ~k·2⁻⁹ of the terms' magnitudes over k terms; the ops
// tests bound it).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace kvrag {

// True when libtorch multiplies bf16 matrices natively on this CPU (through oneDNN, which
// libtorch 1.13 uses when the CPU has AVX-512 BW/VL/DQ: cpu_isa() ≥ CpuIsa::kAvx512, see
// ops/cpu_isa.h). Elsewhere its bf16 matmul is a scalar fallback (1-5 GFLOP/s), so linear() and
// matmul() compute bf16 products in fp32 instead: the inputs convert exactly, both accumulate in
// fp32 and the result is rounded to bf16 once, as natively.
bool native_bf16_matmul();

// True where linear() multiplies fp32 x (more than kGemvMaxRows rows) by an fp32 weight through
// oneDNN's sgemm in inference, rather than BLAS: where the CPU has AVX-512 (cpu_isa() ≥
// CpuIsa::kAvx512), for which oneDNN JITs its kernel whatever the BLAS was built or told to use
// (OpenBLAS under OPENBLAS_CORETYPE=Haswell runs AVX2 code on such a CPU). Its threads are the
// calling thread's OpenMP team (libtorch's), not BLAS's pool. With autograd, on AVX2 CPUs (where
// oneDNN measured no faster than OpenBLAS) and where that team is smaller than BLAS's (inside a
// SerialIntraOpGuard), fp32 products stay with BLAS.
bool fp32_gemm_on_onednn();

// True where linear() multiplies bf16 x (more than kGemvMaxRows rows) by a bf16 weight in
// inference through oneDNN's fp32 sgemm, W widened to fp32 kWeightTileBytes of rows at a time,
// rather than through libtorch's native bf16 GEMM: where fp32_gemm_on_onednn() and the CPU's bf16
// dot products are no faster than its fp32 FMAs. That is below CpuIsa::kAvx512Bf16 (oneDNN then
// emulates bf16: bert-base 135 GFLOP/s against 263 in fp32, README), and with AVX512_BF16 on
// Intel without AMX-BF16 (on an Emerald Rapids VM with AMX hidden, oneDNN's bf16 GEMM ran at 162
// GFLOP/s where its sgemm ran at ~240, and 1.1B bf16 prefill went from 78 to 106 tokens/s;
// published throughputs put vdpbf16ps on one port where FMAs have two). Native on AMX, and on AMD
// (a Zen 5 measured: bf16 877 GFLOP/s against the sgemm's 280-420).
bool bf16_gemm_widened_to_fp32();

// Where a weight is converted to a float dtype for a GEMM (bf16 → fp32 without native bf16
// matmul; int8 → bf16 or fp32 in q8_linear), it is converted in tiles of rows of at most this many
// bytes: all the float weight memory a product holds (a 7B's lm_head whole would be 262 MB in
// bf16, 524 in fp32).
constexpr int64_t kWeightTileBytes = int64_t{16} << 20;

// Maximum rows of x that linear() multiplies with its matrix-vector kernel.
constexpr int64_t kGemvMaxRows = 8;

// y = x Wᵀ (+ b): x [..., in], weight [out, in], bias [out] or undefined → [..., out].
//
// Inference (no autograd history needed) with at most kGemvMaxRows rows of x — the decode step
// of generation — runs a matrix-vector kernel that streams W once for all rows, reading bf16
// weights as bf16 (half the memory traffic of fp32) and accumulating in fp32 (the bias is added
// in fp32 before the one rounding, as addmm does); it parallelises over output features on
// kvrag's helper threads (parallel_chunks), with AVX2/FMA or AVX-512 where cpu_isa() allows, and
// for bf16 with AVX512_BF16 multiplies pairs of bf16 weights and x directly (vdpbf16ps: exact
// products, fp32 sums, subnormals flushed to zero). More rows of fp32 in inference go to oneDNN's
// sgemm where fp32_gemm_on_onednn(), and of bf16 to its sgemm on widened tiles of W where
// bf16_gemm_widened_to_fp32(). Everything else goes to torch::nn::functional::linear (BLAS /
// oneDNN), in fp32 for bf16 without native_bf16_matmul() (in inference converting W to fp32 16 MB
// of rows at a time, so that no fp32 copy of a whole weight is held). The weight is taken as a
// tensor, so a kernel for another weight format can be chosen here from its dtype.
at::Tensor linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {});

// x [M, K] with zero rows appended up to the row count at which libtorch's native bf16 GEMM
// (oneDNN 2.6) runs at full speed: M rounded up to a multiple of 64 where M > 64 (x itself where
// it is one, or where M ≤ 64). Why: measured with 2 threads on a Sapphire Rapids (K = 2048, N =
// 5632 and 2048), M = 1416, 1464, 1488, 1696, 1888 or 1952 runs at 45-100 GFLOP/s against
// 300-430 for its neighbours (a multiple of 8 or 32 times a prime: the split of M over threads
// degenerates), so a 1,464-token prefill ran at a quarter of the speed of 1,472; every multiple
// of 64 from 128 to 3072 ran at 250 or more. The zero rows cost at most 63/M more work; the
// caller keeps the first M rows of the product. Differentiable.
at::Tensor pad_rows_for_bf16_gemm(const at::Tensor& x);
// a @ b (torch::matmul, broadcasting batch dimensions), in fp32 for bf16 operands without
// native_bf16_matmul(); the result has the operands' dtype either way. Differentiable.
at::Tensor matmul(const at::Tensor& a, const at::Tensor& b);

}  // namespace kvrag
