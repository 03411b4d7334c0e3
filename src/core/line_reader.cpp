// Lines of a plain or gzip-compressed file through zlib's gzread (see line_reader.h).
#include "core/line_reader.h"

#include <sys/stat.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace kvrag {

namespace {

constexpr unsigned kChunk = 1u << 18;  // bytes decompressed per gzread

gzFile gz(void* file) { return static_cast<gzFile>(file); }

}  // namespace

LineReader::LineReader(std::string path) : path_(std::move(path)) {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) fail("{}: cannot open: {}", path_, std::strerror(errno));
  KVRAG_CHECK(!S_ISDIR(st.st_mode), "{}: cannot open: is a directory", path_);
  file_size_ = static_cast<int64_t>(st.st_size);
  errno = 0;
  file_ = gzopen(path_.c_str(), "rb");
  if (file_ == nullptr) {
    fail("{}: cannot open: {}", path_, errno != 0 ? std::strerror(errno) : "out of memory");
  }
  gzbuffer(gz(file_), kChunk);
}

LineReader::~LineReader() {
  if (file_ != nullptr) gzclose(gz(file_));
}

bool LineReader::next(std::string& line) {
  line.clear();
  for (;;) {
    const size_t nl = buffer_.find('\n', pos_);
    if (nl != std::string::npos) {
      line.append(buffer_, pos_, nl - pos_);
      pos_ = nl + 1;
      break;
    }
    line.append(buffer_, pos_, std::string::npos);
    buffer_.clear();
    pos_ = 0;
    if (eof_) {
      if (line.empty()) return false;
      break;  // a last line without "\n"
    }
    buffer_.resize(kChunk);
    const int n = gzread(gz(file_), buffer_.data(), kChunk);
    if (n < 0) {
      int code = 0;
      const char* why = gzerror(gz(file_), &code);
      fail("{}: read error after line {}: {}", path_, line_number_,
           code == Z_ERRNO ? std::strerror(errno) : why);
    }
    buffer_.resize(static_cast<size_t>(n));
    if (n == 0) {
      // gzread returns 0 at the end, and also on a stream cut short: tell the two apart.
      int code = Z_OK;
      const char* why = gzerror(gz(file_), &code);
      KVRAG_CHECK(code == Z_OK, "{}: read error after line {}: {} (a truncated gzip file?)", path_,
                  line_number_, why);
      eof_ = true;
    }
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  ++line_number_;
  return true;
}

int64_t LineReader::bytes_read() const {
  const z_off_t offset = gzoffset(gz(file_));
  return offset < 0 ? 0 : static_cast<int64_t>(offset);
}

}  // namespace kvrag
