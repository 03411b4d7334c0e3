// A TCP client that writes exactly the bytes it is given: for the requests no well-behaved HTTP
// client library sends (chunked bodies, missing or conflicting lengths, foreign Host headers,
// clients that stop half-way).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

namespace kvrag::test {

class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      close(fd_);
      fd_ = -1;
    }
    int yes = 1;
    if (fd_ >= 0) setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
  }
  ~RawConnection() {
    if (fd_ >= 0) close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }

  // Writes all of `bytes`; false when the connection is gone.
  bool send(const std::string& bytes) {
    size_t done = 0;
    while (fd_ >= 0 && done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return fd_ >= 0;
  }

  // One response: its headers and as much body as Content-Length says, or what came before the
  // server closed the connection or `timeout_s` passed without a byte.
  std::string read_response(double timeout_s = 10) {
    std::string got;
    for (;;) {
      const auto end = got.find("\r\n\r\n");
      if (end != std::string::npos) {
        const size_t body = end + 4;
        const auto at = got.find("Content-Length: ");
        const size_t length = at == std::string::npos || at > end
                                  ? 0
                                  : std::strtoul(got.c_str() + at + 16, nullptr, 10);
        if (got.size() >= body + length) return got;
      }
      char buf[4096];
      const ssize_t n = read_some(buf, sizeof(buf), timeout_s);
      if (n <= 0) return got;
      got.append(buf, static_cast<size_t>(n));
    }
  }

  // Whether the server closes the connection (reads it to the end) within `timeout_s`.
  bool closed_by_server(double timeout_s) {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    char buf[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      const ssize_t n = read_some(buf, sizeof(buf), 0.2);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN) return true;  // reset
    }
    return false;
  }

 private:
  // read() after waiting up to `timeout_s`; -1 with errno EAGAIN on timeout.
  ssize_t read_some(char* buf, size_t size, double timeout_s) {
    pollfd p{fd_, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(timeout_s * 1000));
    if (ready == 0) {
      errno = EAGAIN;
      return -1;
    }
    return ::read(fd_, buf, size);
  }

  int fd_ = -1;
};

// The status code of a raw response ("HTTP/1.1 411 Length Required ..." → 411), 0 if none.
inline int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;
  return std::atoi(response.c_str() + 9);
}

}  // namespace kvrag::test
