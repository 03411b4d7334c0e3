// tune_malloc (core/malloc_tuning.h): after it, a block of tens of MB comes from glibc's heap, not
// from a mapping of its own, and freeing it keeps the memory in the process for the next one.

#include "core/malloc_tuning.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace kvrag {
namespace {

#if defined(__GLIBC__)
TEST(MallocTuning, LargeBlocksStayInTheHeap) {
  tune_malloc();
  const size_t before = mallinfo2().hblkhd;    // bytes in blocks with their own mapping
  constexpr size_t kBytes = size_t{64} << 20;  // above glibc's largest mmap threshold (32 MiB)
  void* block = std::malloc(kBytes);
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBytes);
  EXPECT_EQ(mallinfo2().hblkhd, before) << "a 64 MiB block was given its own mapping";
  std::free(block);
  // Freed at the top of the heap, it is kept (trim threshold 512 MiB), not returned.
  EXPECT_GE(mallinfo2().fordblks, kBytes);
}
#else
TEST(MallocTuning, LargeBlocksStayInTheHeap) {
  GTEST_SKIP() << "not glibc: tune_malloc does nothing";
}
#endif

}  // namespace
}  // namespace kvrag
