// FolderLock: one exclusive writer or any number of shared ones, failing at once with the
// holder named, and released with its holder.
#include "core/folder_lock.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "support/checkpoint_test_util.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

using test::TempDir;

TEST(FolderLock, SecondExclusiveWriterFailsNamingTheHolder) {
  TempDir tmp;
  const std::string dir = tmp / "index";  // created by the lock
  FolderLock first(dir, LockMode::kExclusive, "kvrag segment");
  EXPECT_TRUE(std::filesystem::is_regular_file(dir + "/.kvrag.lock"));
  EXPECT_KVRAG_ERROR(FolderLock(dir, LockMode::kExclusive, "kvrag index build"), dir,
                     "kvrag index build cannot start",
                     "PID " + std::to_string(getpid()) + " (kvrag segment)");
  EXPECT_KVRAG_ERROR(FolderLock(dir, LockMode::kShared, "kvrag embed"), "kvrag embed cannot start",
                     "(kvrag segment)");
}

TEST(FolderLock, SharedHoldersCoexistAndKeepOutAnExclusiveOne) {
  TempDir tmp;
  FolderLock a(tmp.path(), LockMode::kShared, "kvrag embed");
  FolderLock b(tmp.path(), LockMode::kShared, "kvrag embed");
  EXPECT_KVRAG_ERROR(FolderLock(tmp.path(), LockMode::kExclusive, "kvrag segment"),
                     "kvrag segment cannot start", "another kvrag process");
}

TEST(FolderLock, ReleasedWithItsHolder) {
  TempDir tmp;
  auto held = std::make_unique<FolderLock>(tmp.path(), LockMode::kExclusive, "kvrag segment");
  held.reset();
  FolderLock again(tmp.path(), LockMode::kExclusive, "kvrag index build");
  // Locks of other names are independent.
  FolderLock other(tmp.path(), LockMode::kExclusive, "kvrag embed --shard 0/2",
                   ".kvrag.lock.embed-0-of-2");
}

TEST(FolderLock, AFolderThatCannotBeMadeIsAnError) {
  TempDir tmp;
  ASSERT_TRUE(std::ofstream(tmp / "file").good());
  EXPECT_KVRAG_ERROR(FolderLock(tmp / "file/index", LockMode::kExclusive, "kvrag segment"),
                     tmp / "file/index");
}

}  // namespace
}  // namespace kvrag
