// The safetensors reader (checkpoint/safetensors.h) on arbitrary bytes as a whole file.
#include "checkpoint/safetensors.h"
#include "core/error.h"
#include "fuzz_entry.h"

KVRAG_FUZZ_TARGET {
  try {
    const auto contents = kvrag::parse_safetensors(reinterpret_cast<const std::byte*>(data), size,
                                                   "fuzz.safetensors");
    // Every tensor handed out lies inside the input and is as long as its shape says: read it
    // all (AddressSanitizer checks the bounds; libFuzzer's copy of the input is exactly `size`).
    unsigned sum = 0;
    for (const auto& t : contents.tensors) {
      KVRAG_FUZZ_ASSERT(t.nbytes == static_cast<size_t>(t.numel()) * kvrag::dtype_size(t.dtype));
      for (size_t i = 0; i < t.nbytes; ++i) sum += static_cast<unsigned>(t.data[i]);
    }
    for (const auto& [key, value] : contents.metadata) sum += key.size() + value.size();
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const kvrag::Error&) {
  }
  return 0;
}
