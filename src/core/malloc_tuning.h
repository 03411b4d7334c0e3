// How glibc's malloc hands memory back to the kernel, tuned for tensor work.
#pragma once

namespace kvrag {

// Makes glibc's malloc serve every block from its heap (none gets a mapping of its own) and keep
// up to 512 MiB of freed heap before returning it to the kernel. Call once, first thing in main().
//
// Why: a forward pass allocates and frees the same activations layer after layer. With glibc's
// defaults (blocks above a threshold that adapts up to 32 MiB get their own mmap, and a heap whose
// free top exceeds twice that is trimmed) those pages went back to the kernel and were faulted in
// again, zeroed, on the next layer. Measured on an AMD EPYC with 2 threads:
//  - keeping blocks under 32 MiB in the heap (the most M_MMAP_THRESHOLD allows) took 1.1B prefill
//    (`bench_llama --prompt-len 128`) from 105-116 to ~300 tok/s in int8, 139-155 to ~260 in
//    bf16 and 36 to 58 in fp32: page faults had been ~30% of the int8 prefill's perf samples;
//  - larger blocks still faulted: bert-base's [16 × 288, 3072] fp32 activations (57 MB) and a
//    1,024-token 1.1B prefill's attention scores. Taking them from the heap too (M_MMAP_MAX = 0)
//    took bert-base int8 encoding from 150 to 500 GFLOP/s and fp32 from 108 to 180, and 1.1B
//    prefill of 1,024 tokens from 66 to 263 tok/s in bf16 and 52 to 205 in int8.
// Peak resident memory did not change (1.1B: 2.50 GB bf16, 1.73 GB int8, 4.83 GB fp32): the memory
// kept is what the next layer reuses. The cost: freed blocks below the heap's top stay resident
// until reused, so a long-running process holds about its peak. (Should the heap be unable to
// grow, glibc still falls back to a mapping.) No effect, and no error, with another allocator.
void tune_malloc();

}  // namespace kvrag
