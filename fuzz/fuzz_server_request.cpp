// The server's request handling (serve/http_daemon.h, serve/server.h) on arbitrary bytes sent
// over a real connection: libmicrohttpd's parsing, the front's checks (Host, API key, lengths,
// Content-Type), the routing and the JSON API, over a service that answers at once.
//
// The first byte chooses the server: even, one without an API key (Host checks); odd, one with
// the key "fuzz-key". The rest is written to a fresh connection, which is then half-closed; the
// harness reads what comes back. A finding besides crashes and sanitizer reports: a 500 (the
// service below never fails, so a 500 is the server's own fault).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_entry.h"
#include "serve/server.h"

namespace {

// Answers every question with itself and one piece of evidence per requested segment.
class EchoService final : public kvrag::AnswerService {
 public:
  kvrag::Answer ask(const std::string& question, kvrag::AnswerMode mode, int top_k) override {
    kvrag::Answer a;
    a.text = question;
    if (mode != kvrag::AnswerMode::kNone) a.evidence = search(question, top_k, "dense");
    return a;
  }
  std::vector<kvrag::Evidence> search(const std::string& question, int top_k,
                                      const std::string& retriever_mode) override {
    std::vector<kvrag::Evidence> out(static_cast<size_t>(top_k));
    for (int i = 0; i < top_k; ++i) {
      out[i].segment_id = i;
      out[i].doc_id = std::to_string(i);
      out[i].title = retriever_mode;
      out[i].text = question;
      out[i].score = 1.0 / (i + 1);
    }
    return out;
  }
  std::vector<kvrag::AnswerMode> modes() const override {
    return {kvrag::AnswerMode::kPrefix, kvrag::AnswerMode::kNone, kvrag::AnswerMode::kContext};
  }
  std::vector<std::string> retriever_modes() const override { return {"dense", "bm25", "hybrid"}; }
  nlohmann::json models() const override { return {{"llm", "echo"}, {"index", "echo"}}; }
};

struct Running {
  EchoService service;
  std::unique_ptr<kvrag::Server> server;
  int port = 0;

  explicit Running(const std::string& api_key) {
    kvrag::ServerOptions o;
    o.http.port = 0;
    o.http.workers = 2;
    o.http.max_queue = 8;
    o.http.max_body_bytes = 4096;
    o.http.idle_timeout_s = 1;
    o.http.request_timeout_s = 2;
    o.http.api_key = api_key;
    if (!api_key.empty()) o.http.public_paths = {"/"};
    o.max_question_bytes = 256;
    server = std::make_unique<kvrag::Server>(service, o);
    port = server->start();
  }
};

// Sends `bytes` on a new connection, half-closes it and returns what comes back.
std::string exchange(int port, const char* bytes, size_t size) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  KVRAG_FUZZ_ASSERT(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  KVRAG_FUZZ_ASSERT(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  size_t sent = 0;
  while (sent < size) {  // the server may close early (an error before the body): stop there
    const ssize_t n = ::send(fd, bytes + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  // Read until the server closes or stays silent for 50 ms. A finished request is answered in
  // well under that (the service answers at once); an unfinished one gets no answer, and the
  // server keeps its connection until the request deadline (libmicrohttpd does not treat a
  // half-close as the end of a request), which the harness does not wait for.
  std::string reply;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) break;
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;  // closed (or reset)
    reply.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return reply;
}

}  // namespace

KVRAG_FUZZ_TARGET {
  static Running open_server("");
  static Running keyed_server("fuzz-key");
  if (size == 0) return 0;
  const Running& server = data[0] % 2 == 0 ? open_server : keyed_server;
  const std::string reply =
      exchange(server.port, reinterpret_cast<const char*>(data) + 1, size - 1);
  KVRAG_FUZZ_ASSERT(reply.compare(0, 12, "HTTP/1.1 500") != 0 &&
                    reply.compare(0, 12, "HTTP/1.0 500") != 0);
  return 0;
}
