// Streaming reader of a text file's lines, plain or gzip-compressed (decided by the content, not
// the name: zlib reads a file without the gzip magic as it is). One line in memory at a time, so
// a file of any size (a 4 GB .jsonl.gz) reads in constant memory.
//
// Lines end with "\n" or "\r\n" (neither is part of the line); a last line without "\n" is a
// line. A truncated or corrupt gzip stream is an Error naming the file.
#pragma once

#include <cstdint>
#include <string>

namespace kvrag {

class LineReader {
 public:
  // Throws Error "FILE: cannot open: reason" if the file cannot be opened.
  explicit LineReader(std::string path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Next line into `line`; false at the end of the file. Throws Error on a read error.
  bool next(std::string& line);

  const std::string& path() const { return path_; }
  int64_t line_number() const { return line_number_; }  // 1-based number of the last line read
  // Bytes of the file consumed so far (compressed bytes for gzip) and its size, for progress.
  int64_t bytes_read() const;
  int64_t file_size() const { return file_size_; }

 private:
  std::string path_;
  void* file_ = nullptr;  // gzFile
  int64_t line_number_ = 0;
  int64_t file_size_ = 0;
  std::string buffer_;  // decompressed bytes not yet returned: buffer_[pos_, end)
  size_t pos_ = 0;
  bool eof_ = false;
};

}  // namespace kvrag
