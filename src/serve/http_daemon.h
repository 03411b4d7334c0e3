// The HTTP front of `kvrag serve`: connections, limits and threads, over GNU libmicrohttpd.
//
// One event-loop thread (epoll) reads every connection without blocking, so a slow or idle
// client costs a socket and a little memory but never a thread: slow-loris connections cannot
// starve anyone. A request reaches the handler only once it is whole and passed the checks below;
// requests with a body are then answered on a pool of `workers` threads (the connection is
// suspended meanwhile), requests without one (the page, health) on the loop itself, at once.
//
// Checked before a byte of body is read, each with a JSON error {"error": message}:
//   403  the Host header names neither a loopback name, the bound address nor an allowed host
//        (DNS rebinding), unless an API key is set: then the key decides
//   401  an API key is set and "Authorization: Bearer KEY" does not carry it (WWW-Authenticate)
//   411  a body without Content-Length (chunked bodies are refused: RFC 9112 §6.3 lets a server
//        ask for the length, and a known length is what lets the limit hold before reading)
//   400  two different Content-Lengths, or Content-Length with Transfer-Encoding (smuggling)
//   413  a Content-Length over max_body_bytes
//   415  a body whose Content-Type is not application/json (a cross-site form or text/plain post)
//   503  more requests waiting than the queue holds, or the server is stopping (Retry-After)
// A connection idle for idle_timeout_s (headers or body stalled, or kept alive unused) is closed,
// and so is one whose request (headers and body) is not in within request_timeout_s of its start:
// a client that sends a header line every few seconds is cut off all the same.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace kvrag {

struct HttpRequest {
  std::string method, path;                           // path without the query, %-decoded
  std::string body;                                   // empty until the body is read
  std::string header(const std::string& name) const;  // case-insensitive; "" when absent
  std::vector<std::pair<std::string, std::string>> headers;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // added to the defaults

  // {"error": message} with `status`.
  static HttpResponse error(int status, const std::string& message);
};

struct HttpLimits {
  std::string host = "127.0.0.1";  // address to bind; "localhost", IPv4 or IPv6 literal
  int port = 8080;                 // 0: any free port
  int workers = 8;                 // threads answering requests that carry a body
  int max_queue = 64;              // requests waiting for a worker beyond that get 503
  int max_connections = 1024;      // open connections beyond that are refused at accept
  size_t max_body_bytes = 64 * 1024;
  int idle_timeout_s = 5;      // a connection that sends nothing for this long is closed
  int request_timeout_s = 10;  // a whole request (headers and body) must arrive within this
  std::string api_key;         // non-empty: every request must carry "Authorization: Bearer KEY"
  std::vector<std::string> public_paths;   // answered without the key (a page holding no data)
  bool insecure = false;                   // allow a non-loopback address without an API key
  std::vector<std::string> allowed_hosts;  // more names the Host header may carry
};

class HttpDaemon {
 public:
  // What to do with a request whose headers are in.
  struct Handler {
    // A response now (an error such as 404/405, or a cheap GET answered on the loop thread), or
    // nullopt: read the body and call `answer` on a worker. Must not block.
    std::function<std::optional<HttpResponse>(const HttpRequest&)> on_headers;
    // The response to a whole request (with its body), on a worker thread. Thread-safe.
    std::function<HttpResponse(const HttpRequest&)> answer;
    // Called after each response is sent (or the connection dropped), if set; any thread.
    std::function<void(const HttpRequest&, const HttpResponse&)> log;
  };

  HttpDaemon(Handler handler, HttpLimits limits);  // check_limits(limits)
  ~HttpDaemon();                                   // stops
  HttpDaemon(const HttpDaemon&) = delete;
  HttpDaemon& operator=(const HttpDaemon&) = delete;

  // Binds and listens; returns the port. Error naming the address when that fails.
  int bind();
  // Serves until stop() (from any thread): requests in flight are finished and sent, new ones
  // get 503. bind() first.
  void run();
  void stop();  // thread- and repeat-safe; before run(), makes run() return at once

  int port() const;
  const HttpLimits& limits() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Throws Error when `limits` cannot be served: a count or timeout below 1, a port out of range, or
// a non-loopback address without an API key or `insecure`. HttpDaemon's constructor calls it;
// call it before loading models to fail early.
void check_limits(const HttpLimits& limits);

// Whether `host` is a loopback address or name ("localhost", 127.0.0.0/8, ::1).
bool is_loopback_host(const std::string& host);

}  // namespace kvrag
