// read_file and AtomicFile: contents, atomic replacement, clean-up, and errors naming the path.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <filesystem>

#include "core/atomic_file.h"
#include "support/checkpoint_test_util.h"
#include "support/test_support.h"

namespace fs = std::filesystem;
using kvrag::AtomicFile;
using kvrag::read_file;
using kvrag::write_file_atomic;

namespace {

// Names in `dir`, to check that no temporary file is left behind.
std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST(AtomicFile, WriteThenRead) {
  kvrag::test::TempDir tmp;
  std::string path = tmp / "a.bin";
  std::string bytes("hello\0world", 11);
  write_file_atomic(path, bytes);
  EXPECT_EQ(read_file(path), bytes);
  EXPECT_EQ(listing(tmp.path()), std::vector<std::string>{"a.bin"});
}

TEST(AtomicFile, EmptyAndLargeFiles) {
  kvrag::test::TempDir tmp;
  write_file_atomic(tmp / "empty", "");
  EXPECT_EQ(read_file(tmp / "empty"), "");

  std::string big(3 << 20, '\0');  // larger than read_file's buffer
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 + 7);
  AtomicFile f(tmp / "big");
  f.write(big.data(), big.size() / 2);
  f.write(std::string_view(big).substr(big.size() / 2));
  f.commit();
  EXPECT_EQ(read_file(tmp / "big"), big);
}

TEST(AtomicFile, ReplacesExistingFile) {
  kvrag::test::TempDir tmp;
  std::string path = tmp / "f";
  write_file_atomic(path, "old contents");
  {
    AtomicFile f(path);
    f.write("new");
    EXPECT_EQ(read_file(path), "old contents");  // untouched until commit
    f.commit();
  }
  EXPECT_EQ(read_file(path), "new");
  EXPECT_EQ(listing(tmp.path()), std::vector<std::string>{"f"});
}

TEST(AtomicFile, DestroyedWithoutCommitLeavesTargetAlone) {
  kvrag::test::TempDir tmp;
  std::string path = tmp / "f";
  write_file_atomic(path, "keep");
  std::string temp;
  {
    AtomicFile f(path);
    temp = f.temp_path();
    f.write("discard me");
    EXPECT_TRUE(fs::exists(temp));
    EXPECT_EQ(fs::path(temp).parent_path(), fs::path(path).parent_path());  // same directory
  }
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_EQ(read_file(path), "keep");
  EXPECT_EQ(listing(tmp.path()), std::vector<std::string>{"f"});

  // A never-committed new file does not appear at all.
  {
    AtomicFile g(tmp / "never");
    g.write("x");
  }
  EXPECT_FALSE(fs::exists(tmp / "never"));
}

TEST(AtomicFile, TempNamesAreUnique) {
  kvrag::test::TempDir tmp;
  std::string path = tmp / "f";
  AtomicFile a(path), b(path);
  EXPECT_NE(a.temp_path(), b.temp_path());
  a.write("a");
  b.write("b");
  a.commit();
  b.commit();
  EXPECT_EQ(read_file(path), "b");  // last commit wins
  EXPECT_EQ(listing(tmp.path()), std::vector<std::string>{"f"});
}

TEST(AtomicFile, UseAfterCommitThrows) {
  kvrag::test::TempDir tmp;
  AtomicFile f(tmp / "f");
  f.commit();
  EXPECT_KVRAG_ERROR(f.write("x"), tmp / "f", "already committed");
  EXPECT_KVRAG_ERROR(f.commit(), tmp / "f", "already committed");
}

TEST(AtomicFile, MissingDirectoryNamesPathAndReason) {
  kvrag::test::TempDir tmp;
  std::string path = tmp / "no-such-dir/f";
  EXPECT_KVRAG_ERROR(AtomicFile f(path), path, "No such file or directory");
  EXPECT_KVRAG_ERROR(write_file_atomic(path, "x"), path, "No such file or directory");
}

// A failing write() (here EFBIG from RLIMIT_FSIZE, standing in for ENOSPC) names the path and
// strerror, and removes the temporary file.
TEST(AtomicFile, WriteErrorNamesPathAndReason) {
  kvrag::test::TempDir tmp;
  std::string path = tmp / "f";
  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  if (old_limit.rlim_cur != RLIM_INFINITY && old_limit.rlim_cur < 4096)
    GTEST_SKIP() << "file size limit already tiny";

  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);  // get EFBIG instead of the signal
  struct rlimit small = old_limit;
  small.rlim_cur = 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string temp;
  std::string message;
  try {
    AtomicFile f(path);
    temp = f.temp_path();
    f.write(std::string(4096, 'x'));
    f.commit();
  } catch (const kvrag::Error& e) {
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old_limit);
  std::signal(SIGXFSZ, old_handler);

  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_FALSE(fs::exists(path));
}

TEST(ReadFile, ErrorsNamePath) {
  kvrag::test::TempDir tmp;
  EXPECT_KVRAG_ERROR(read_file(tmp / "missing"), tmp / "missing", "No such file or directory");
  EXPECT_KVRAG_ERROR(read_file(tmp.path()), tmp.path(), "Is a directory");
}
