#include "fuzz_support.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

namespace kvrag_fuzz {
namespace {

struct Files {
  std::map<std::string, std::string> by_suffix;
  ~Files() {
    for (const auto& [suffix, path] : by_suffix) std::remove(path.c_str());
  }
};

}  // namespace

std::string input_file(const uint8_t* data, size_t size, const std::string& suffix) {
  static Files files;
  auto it = files.by_suffix.find(suffix);
  if (it == files.by_suffix.end()) {
    const std::string dir = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string path = dir + "/kvrag-fuzz-" + std::to_string(::getpid()) + suffix;
    it = files.by_suffix.emplace(suffix, path).first;
  }
  const std::string& path = it->second;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return path;
}

std::string shared_file(const std::string& relative) {
  const char* env = std::getenv("KVRAG_SHARED");
  const std::string root = env && *env ? env : KVRAG_SOURCE_DIR "/../shared";
  const std::string path = root + "/" + relative;
  if (std::filesystem::exists(path)) return path;
  static bool said = false;
  if (!said)
    std::fprintf(stderr, "kvrag fuzz: %s not found; this harness does nothing\n", path.c_str());
  said = true;
  return "";
}

}  // namespace kvrag_fuzz
