// Whole-file I/O: reading with errors that name the file, and atomic writes.
#pragma once

#include <string>
#include <string_view>

namespace kvrag {

// Reads the whole file; throws Error naming `path` if it cannot be read.
std::string read_file(const std::string& path);

// Writes a file atomically: the bytes go to a temporary file beside `path`, which is flushed to
// disk and then renamed over `path`. Readers see the old file or the new one, never a part.
// An AtomicFile destroyed without commit() removes its temporary file and leaves `path` alone.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  // fsync + rename; after this the object is spent.
  void commit();

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
};

// Convenience: AtomicFile f(path); f.write(bytes); f.commit();
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace kvrag
