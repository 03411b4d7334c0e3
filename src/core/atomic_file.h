// Whole-file I/O: reading with errors that name the file, and atomic writes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace kvrag {

// Reads the whole file; throws Error naming `path` (and strerror) if it cannot be read.
std::string read_file(const std::string& path);

// Writes a file atomically: the bytes go to a temporary file beside `path`
// ("PATH.tmp.PID.N", created exclusively), which is fsync'ed and then renamed over `path`;
// the directory is fsync'ed too so the rename survives a crash. Readers see the old file or
// the new one, never a part. An AtomicFile destroyed without commit() removes its temporary
// file and leaves `path` alone.
//
// Every failure (missing directory, ENOSPC, EIO, …) throws Error naming `path` and strerror;
// after a failed write() or commit() the object is spent and the destructor cleans up.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  // fsync + rename + fsync of the directory; after this the object is spent.
  void commit();

  const std::string& path() const { return path_; }
  // The temporary file being written (empty once committed or cleaned up).
  const std::string& temp_path() const { return temp_path_; }

 private:
  void discard() noexcept;  // closes and unlinks the temporary file, if any

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
};

// Convenience: AtomicFile f(path); f.write(bytes); f.commit();
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace kvrag
