// How glibc's malloc hands memory back to the kernel, tuned for tensor work.
#pragma once

namespace kvrag {

// Makes glibc's malloc serve blocks below 32 MiB from its heap (not one mmap each) and keep up to
// 512 MiB of freed heap before returning it to the kernel. Call once, first thing in main().
//
// Why: a forward pass allocates and frees the same few-MB activations layer after layer. With
// glibc's defaults (blocks above a threshold that adapts up to 32 MiB get their own mmap, and a
// heap whose free top exceeds twice that is trimmed) those pages went back to the kernel and were
// faulted in again, zeroed, on the next layer: page faults were ~30% of a 1.1B int8 prefill's
// perf samples. Measured with `bench_llama --prompt-len 128` on 1.1B weights (AMD EPYC, 2
// threads), prefill tok/s before → after: int8 105-116 → ~300, bf16 139-155 → ~260, fp32 36 → 58;
// decode and peak resident memory unchanged (the retained memory is what the next layer reuses).
// Blocks of 32 MiB and more (a 7B's largest weights, long prompts' attention scores) still get
// their own mapping and go back at once. No effect, and no error, with another allocator.
void tune_malloc();

}  // namespace kvrag
