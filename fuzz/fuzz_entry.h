// The entry point every harness defines: libFuzzer's LLVMFuzzerTestOneInput, or, where the
// regression test (tests/fuzz) links all harnesses into one binary, a name of each one's own.
//
// A harness's contract: an input the parser rejects is a kvrag::Error, which the harness
// catches; anything else that escapes (another exception, a crash, a sanitizer report, a broken
// invariant reported with __builtin_trap) is a finding.
#pragma once

#include <cstddef>
#include <cstdint>

#ifndef KVRAG_FUZZ_ENTRY
#define KVRAG_FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif

#define KVRAG_FUZZ_TARGET extern "C" int KVRAG_FUZZ_ENTRY(const uint8_t* data, size_t size)

// A broken invariant: stop here so that the fuzzer keeps the input.
#define KVRAG_FUZZ_ASSERT(cond)    \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)
