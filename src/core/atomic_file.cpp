// Whole-file reads and crash-safe writes (temp file + fsync + rename + fsync of the directory).
#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace kvrag {

namespace {

std::string errno_string(int err) { return std::strerror(err); }

// The directory holding `path` ("." for a bare file name), for the fsync after rename.
std::string parent_dir(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// A name no other AtomicFile of this or another process uses at the same time.
std::string make_temp_path(const std::string& path) {
  static std::atomic<unsigned long> counter{0};
  return fmt::format("{}.tmp.{}.{}", path, static_cast<long>(getpid()), counter.fetch_add(1));
}

// fsync of a directory, so that a rename inside it is durable. Some file systems cannot fsync
// directories (EINVAL) — there is nothing more to do on those.
void fsync_dir(const std::string& dir, const std::string& path) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail("cannot open directory {} to sync {}: {}", dir, path, errno_string(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL && err != EROFS)
    fail("cannot sync directory {} after writing {}: {}", dir, path, errno_string(err));
}

}  // namespace

std::string read_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open {}: {}", path, errno_string(errno));

  std::string out;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
    out.reserve(static_cast<size_t>(st.st_size));

  // Read until EOF rather than trusting st_size (procfs, pipes, files that grow).
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      fail("cannot read {}: {}", path, errno_string(err));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  if (path_.empty()) fail("cannot write a file with an empty path");
  temp_path_ = make_temp_path(path_);
  // O_EXCL: never truncate somebody else's file. 0666 is narrowed by the umask as usual.
  fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    int err = errno;
    std::string temp = std::move(temp_path_);
    temp_path_.clear();
    fail("cannot write {}: cannot create temporary file {}: {}", path_, temp, errno_string(err));
  }
}

AtomicFile::~AtomicFile() { discard(); }

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!temp_path_.empty()) {
    ::unlink(temp_path_.c_str());
    temp_path_.clear();
  }
}

void AtomicFile::write(const void* data, size_t size) {
  if (fd_ < 0) fail("cannot write {}: file already committed or failed", path_);
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd_, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      discard();
      fail("cannot write {}: {}", path_, errno_string(err));
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) fail("cannot commit {}: file already committed or failed", path_);
  if (::fsync(fd_) != 0) {
    int err = errno;
    discard();
    fail("cannot write {}: fsync: {}", path_, errno_string(err));
  }
  // close() can report a deferred write error (NFS and friends).
  int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) {
    int err = errno;
    discard();
    fail("cannot write {}: close: {}", path_, errno_string(err));
  }
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    discard();
    fail("cannot write {}: rename from {}: {}", path_, temp_path_, errno_string(err));
  }
  temp_path_.clear();  // now owned by `path_`; the destructor must not unlink it
  fsync_dir(parent_dir(path_), path_);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

}  // namespace kvrag
