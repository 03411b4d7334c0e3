#include "core/folder_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "core/error.h"

namespace kvrag {
namespace {

// "PID 123 (JOB)" from what an exclusive holder wrote, if that process still runs; else "".
std::string holder(int fd) {
  char buf[256] = {};
  const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return "";
  const std::string text(buf, static_cast<size_t>(n));
  const long pid = std::strtol(text.c_str(), nullptr, 10);
  if (pid <= 0 || (kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)) return "";
  const std::string line = text.substr(0, text.find('\n'));
  const size_t space = line.find(' ');
  if (space == std::string::npos) return fmt::format("PID {}", pid);
  return fmt::format("PID {} ({})", pid, line.substr(space + 1));
}

}  // namespace

FolderLock::FolderLock(const std::string& dir, LockMode mode, const std::string& job,
                       const std::string& name)
    : path_((std::filesystem::path(dir) / name).string()),
      exclusive_(mode == LockMode::kExclusive) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  KVRAG_CHECK(!ec, "{}: cannot create the folder: {}", dir, ec.message());
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  KVRAG_CHECK(fd_ >= 0, "{}: cannot open the lock file: {}", path_, std::strerror(errno));
  int rc;
  do {
    rc = flock(fd_, (exclusive_ ? LOCK_EX : LOCK_SH) | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    const std::string who = err == EWOULDBLOCK ? holder(fd_) : "";
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK)
      throw Error(fmt::format("{}: cannot lock: {}", path_, std::strerror(err)));
    throw Error(
        fmt::format("{}: {} cannot start: {} is writing this folder; run it again when "
                    "that has finished",
                    dir, job, who.empty() ? "another kvrag process" : who));
  }
  if (exclusive_) {
    const std::string text = fmt::format("{} {}\n", getpid(), job);
    if (ftruncate(fd_, 0) != 0 || pwrite(fd_, text.data(), text.size(), 0) < 0) {
      // Naming the holder is a courtesy; the lock itself is held.
    }
  }
}

FolderLock::~FolderLock() {
  if (fd_ < 0) return;
  if (exclusive_ && ftruncate(fd_, 0) != 0) {
    // The next holder overwrites it; a stale text names a process that no longer runs.
  }
  ::close(fd_);  // releases the flock
}

}  // namespace kvrag
