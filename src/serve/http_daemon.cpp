#include "serve/http_daemon.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"

namespace kvrag {
namespace {

using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Compares a secret in time that depends only on the length of `given`, so that a client cannot
// find the key byte by byte by timing. (OpenSSL's CRYPTO_memcmp does this too; one loop is not
// worth a dependency.)
bool same_secret(const std::string& given, const std::string& secret) {
  volatile unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (size_t i = 0; i < given.size(); ++i) {
    diff |= static_cast<unsigned char>(given[i]) ^
            static_cast<unsigned char>(secret.empty() ? 0 : secret[i % secret.size()]);
  }
  return diff == 0;
}

// The host of a Host header value: "[::1]:8080" → "::1", "example.org:80" → "example.org".
std::string host_name(const std::string& value) {
  if (!value.empty() && value[0] == '[') {
    const auto end = value.find(']');
    return lower(value.substr(1, end == std::string::npos ? std::string::npos : end - 1));
  }
  const auto colon = value.find(':');
  if (colon != std::string::npos && value.find(':', colon + 1) == std::string::npos)
    return lower(value.substr(0, colon));
  return lower(value);
}

bool is_wildcard(const std::string& host) { return host == "0.0.0.0" || host == "::"; }

// A fixed pool of threads over a bounded queue of tasks.
class WorkerPool {
 public:
  WorkerPool(int threads, int max_queue) : max_queue_(static_cast<size_t>(max_queue)) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
  }
  ~WorkerPool() { drain_and_join(); }

  // Queues `task`; false when `max_queue` tasks are already waiting.
  bool try_submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (tasks_.size() >= max_queue_) return false;
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
    return true;
  }

  // Runs what is queued, then ends the threads.
  void drain_and_join() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [this] { return done_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  const size_t max_queue_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool done_ = false;
  std::vector<std::thread> threads_;
};

// A connection, from accept to close (MHD's per-socket pointer). While it is reading a request
// (from its start, and again after each response, for the next one on a kept-alive connection),
// the watchdog holds it to the request deadline.
struct Connection {
  int fd = -1;
  bool reading = true;
  Clock::time_point since = Clock::now();
};

// One request on a connection, from its headers to its completion (MHD's per-request pointer).
struct Exchange {
  HttpRequest request;
  Connection* connection = nullptr;
  bool submitted = false;  // handed to a worker
  std::atomic<bool> answered{false};
  HttpResponse response;  // the worker's, once `answered`; else what was sent
  bool sent = false;
};

MHD_Result collect_header(void* cls, MHD_ValueKind, const char* key, const char* value) {
  static_cast<HttpRequest*>(cls)->headers.emplace_back(key ? key : "", value ? value : "");
  return MHD_YES;
}

}  // namespace

std::string HttpRequest::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  return "";
}

HttpResponse HttpResponse::error(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.body = json{{"error", message}}.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

bool is_loopback_host(const std::string& host) {
  const std::string h = lower(host);
  return h == "localhost" || h == "::1" || h == "[::1]" || h.rfind("127.", 0) == 0;
}

struct HttpDaemon::Impl {
  Handler handler;
  HttpLimits limits;
  int listen_fd = -1;
  int family = AF_INET;
  int port = -1;
  MHD_Daemon* daemon = nullptr;
  std::unique_ptr<WorkerPool> pool;

  std::mutex mutex;
  std::condition_variable cv;
  bool stop_requested = false;
  std::atomic<bool> stopping{false};
  std::atomic<int> awaiting_send{0};  // submitted to a worker, response not yet completed

  // The connections, for the watchdog; guarded by `connections_mutex`, which the close
  // notification also takes, so that a socket is never shut down after MHD has closed it (its
  // number may belong to a new connection by then).
  std::mutex connections_mutex;
  std::vector<Connection*> connections;
  std::thread watchdog;
  std::atomic<int> cut_off{0};  // connections shut down for missing the request deadline

  Impl(Handler h, HttpLimits l) : handler(std::move(h)), limits(std::move(l)) {}

  MHD_Result send(MHD_Connection* connection, Exchange& ex, HttpResponse response) {
    MHD_Response* r = MHD_create_response_from_buffer(
        response.body.size(), const_cast<char*>(response.body.data()), MHD_RESPMEM_MUST_COPY);
    if (r == nullptr) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", response.content_type.c_str());
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    for (const auto& [k, v] : response.headers) MHD_add_response_header(r, k.c_str(), v.c_str());
    const MHD_Result ok = MHD_queue_response(connection, response.status, r);
    MHD_destroy_response(r);
    ex.response = std::move(response);
    ex.sent = true;
    return ok;
  }

  // Whether the Host header may reach us: without an API key, a page on another site that
  // rebinds its name to 127.0.0.1 would otherwise be served.
  bool host_allowed(const std::string& value) const {
    if (value.empty()) return true;  // HTTP/1.0 without Host: no browser sends that
    if (is_wildcard(limits.host) && limits.allowed_hosts.empty()) return true;  // --insecure
    const std::string h = host_name(value);
    if (is_loopback_host(h) || h == lower(limits.host)) return true;
    for (const auto& a : limits.allowed_hosts)
      if (h == lower(a)) return true;
    return false;
  }

  // The checks a request must pass before its body is read; nullopt when it passes.
  std::optional<HttpResponse> refusal_before_routing(const HttpRequest& q) const {
    if (stopping) {
      auto r = HttpResponse::error(503, "the server is stopping");
      r.headers.emplace_back("Retry-After", "5");
      return r;
    }
    const auto& open = limits.public_paths;
    if (!limits.api_key.empty() && std::find(open.begin(), open.end(), q.path) != open.end()) {
      return std::nullopt;
    }
    if (!limits.api_key.empty()) {
      const std::string auth = q.header("Authorization");
      const std::string prefix = "Bearer ";
      if (auth.size() <= prefix.size() || strncasecmp(auth.c_str(), prefix.c_str(), 7) != 0 ||
          !same_secret(auth.substr(prefix.size()), limits.api_key)) {
        auto r = HttpResponse::error(
            401, auth.empty() ? "this server needs an API key: send \"Authorization: Bearer KEY\""
                              : "wrong API key");
        r.headers.emplace_back("WWW-Authenticate", "Bearer");
        return r;
      }
    } else if (!host_allowed(q.header("Host"))) {
      return HttpResponse::error(
          403, fmt::format("Host \"{}\" is not a name this server answers to (localhost, {}; "
                           "serve --allowed-host NAME adds one)",
                           q.header("Host"), limits.host));
    }
    return std::nullopt;
  }

  std::optional<HttpResponse> refusal_of_body(const HttpRequest& q) const {
    std::vector<std::string> lengths;
    for (const auto& [k, v] : q.headers)
      if (strcasecmp(k.c_str(), "Content-Length") == 0) lengths.push_back(v);
    const std::string encoding = q.header("Transfer-Encoding");
    if (!encoding.empty() && !lengths.empty())
      return HttpResponse::error(400, "both Content-Length and Transfer-Encoding given");
    if (!encoding.empty()) {
      return HttpResponse::error(
          411, fmt::format("send the body with a Content-Length (Transfer-Encoding \"{}\" is not "
                           "accepted)",
                           encoding));
    }
    if (lengths.empty()) return HttpResponse::error(411, "Content-Length required");
    for (const auto& l : lengths) {
      if (l != lengths.front())
        return HttpResponse::error(400, "conflicting Content-Length headers");
    }
    const std::string& l = lengths.front();
    if (l.empty() || l.size() > 18 || l.find_first_not_of("0123456789") != std::string::npos)
      return HttpResponse::error(400, fmt::format("bad Content-Length \"{}\"", l));
    const unsigned long long n = std::stoull(l);
    if (n > limits.max_body_bytes) {
      return HttpResponse::error(413, fmt::format("request body of {} bytes is over the limit of "
                                                  "{} bytes",
                                                  n, limits.max_body_bytes));
    }
    const std::string type = lower(q.header("Content-Type"));
    if (type.substr(0, type.find(';')) != "application/json") {
      return HttpResponse::error(415,
                                 fmt::format("Content-Type must be application/json, not \"{}\"",
                                             q.header("Content-Type")));
    }
    return std::nullopt;
  }

  MHD_Result on_access(MHD_Connection* connection, const char* url, const char* method,
                       const char* upload_data, size_t* upload_size, void** state) {
    auto* ex = static_cast<Exchange*>(*state);
    if (ex == nullptr) {  // the headers are in
      ex = new Exchange;
      *state = ex;
      ex->request.method = method;
      ex->request.path = url;
      ex->connection = connection_of(connection);
      MHD_get_connection_values(connection, MHD_HEADER_KIND, collect_header, &ex->request);
      if (auto r = refusal_before_routing(ex->request)) return send(connection, *ex, *r);
      std::optional<HttpResponse> now;
      try {
        now = handler.on_headers(ex->request);
      } catch (const std::exception& e) {
        now = HttpResponse::error(500, fmt::format("internal error: {}", e.what()));
      }
      if (now) return send(connection, *ex, *now);
      if (auto r = refusal_of_body(ex->request)) return send(connection, *ex, *r);
      return MHD_YES;  // read the body
    }
    if (*upload_size != 0) {  // a part of the body (within Content-Length, checked above)
      ex->request.body.append(upload_data, *upload_size);
      *upload_size = 0;
      return MHD_YES;
    }
    if (ex->answered) return send(connection, *ex, std::move(ex->response));  // resumed
    if (ex->submitted) return MHD_YES;  // resumed spuriously: not answered yet
    // The whole request: suspend the connection and answer it on a worker, which resumes it.
    if (stopping) return send(connection, *ex, *refusal_before_routing(ex->request));
    ex->submitted = true;
    ++awaiting_send;
    set_reading(ex->connection, false);  // no deadline while the answer is being computed
    MHD_suspend_connection(connection);
    const bool queued = pool->try_submit([this, connection, ex] {
      HttpResponse r;
      try {
        r = handler.answer(ex->request);
      } catch (const std::exception& e) {
        r = HttpResponse::error(500, fmt::format("internal error: {}", e.what()));
      }
      ex->response = std::move(r);
      ex->answered = true;
      MHD_resume_connection(connection);
    });
    if (!queued) {
      auto r = HttpResponse::error(
          503, fmt::format("busy: {} requests are waiting already", limits.max_queue));
      r.headers.emplace_back("Retry-After", "1");
      ex->response = std::move(r);
      ex->answered = true;
      MHD_resume_connection(connection);
    }
    return MHD_YES;
  }

  void on_completed(void** state) {
    auto* ex = static_cast<Exchange*>(*state);
    if (ex == nullptr) return;
    *state = nullptr;
    if (ex->sent && handler.log) handler.log(ex->request, ex->response);
    if (ex->submitted) --awaiting_send;
    set_reading(ex->connection, true);  // the next request on this connection, if any
    delete ex;
  }

  static Connection* connection_of(MHD_Connection* c) {
    const MHD_ConnectionInfo* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info == nullptr ? nullptr : static_cast<Connection*>(info->socket_context);
  }

  void set_reading(Connection* c, bool reading) {
    if (c == nullptr) return;
    std::lock_guard<std::mutex> lock(connections_mutex);
    c->reading = reading;
    c->since = Clock::now();
  }

  void on_connection(MHD_Connection* c, void** context, MHD_ConnectionNotificationCode code) {
    std::lock_guard<std::mutex> lock(connections_mutex);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
      auto* conn = new Connection;
      const MHD_ConnectionInfo* info =
          MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
      conn->fd = info == nullptr ? -1 : info->connect_fd;
      connections.push_back(conn);
      *context = conn;
    } else {
      auto* conn = static_cast<Connection*>(*context);
      connections.erase(std::remove(connections.begin(), connections.end(), conn),
                        connections.end());
      delete conn;
      *context = nullptr;
    }
  }

  // Shuts down the connections that have been reading one request for longer than the deadline
  // (MHD's own timeout is an idle one: a client sending a byte now and then would never meet it).
  // MHD then sees the socket end and closes it. Runs until `stopping`.
  void watch() {
    const auto deadline = std::chrono::seconds(limits.request_timeout_s);
    while (!stopping) {
      {
        std::lock_guard<std::mutex> lock(connections_mutex);
        const auto now = Clock::now();
        for (Connection* c : connections) {
          if (c->reading && c->fd >= 0 && now - c->since > deadline) {
            shutdown(c->fd, SHUT_RDWR);
            c->reading = false;
            ++cut_off;
          }
        }
      }
      std::unique_lock<std::mutex> lock(mutex);
      cv.wait_for(lock, std::chrono::milliseconds(100), [this] { return stopping.load(); });
    }
  }

  static MHD_Result access_cb(void* cls, MHD_Connection* connection, const char* url,
                              const char* method, const char* /*version*/, const char* upload_data,
                              size_t* upload_size, void** state) {
    return static_cast<Impl*>(cls)->on_access(connection, url, method, upload_data, upload_size,
                                              state);
  }
  static void connection_cb(void* cls, MHD_Connection* connection, void** context,
                            MHD_ConnectionNotificationCode code) {
    static_cast<Impl*>(cls)->on_connection(connection, context, code);
  }
  static void completed_cb(void* cls, MHD_Connection*, void** state, MHD_RequestTerminationCode) {
    static_cast<Impl*>(cls)->on_completed(state);
  }
};

void check_limits(const HttpLimits& l) {
  KVRAG_CHECK(l.workers >= 1, "server: workers must be at least 1, not {}", l.workers);
  KVRAG_CHECK(l.max_queue >= 1 && l.max_connections >= 1 && l.idle_timeout_s >= 1 &&
                  l.request_timeout_s >= 1,
              "server: queue, connection and timeout limits must be at least 1");
  KVRAG_CHECK(l.port >= 0 && l.port <= 65535, "server: port {} is out of range", l.port);
  KVRAG_CHECK(is_loopback_host(l.host) || !l.api_key.empty() || l.insecure,
              "server: listening on {} lets other machines ask; give an API key (serve --api-key "
              "or $KVRAG_API_KEY; clients send \"Authorization: Bearer KEY\"), or --insecure to "
              "serve them without one",
              l.host);
}

HttpDaemon::HttpDaemon(Handler handler, HttpLimits limits)
    : impl_(std::make_unique<Impl>(std::move(handler), std::move(limits))) {
  check_limits(impl_->limits);
}

HttpDaemon::~HttpDaemon() {
  stop();
  if (impl_->listen_fd >= 0) close(impl_->listen_fd);
}

int HttpDaemon::bind() {
  auto& I = *impl_;
  const auto& l = I.limits;
  KVRAG_CHECK(I.listen_fd < 0, "server: bind() twice");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(l.port);
  const int rc = getaddrinfo(l.host.c_str(), service.c_str(), &hints, &found);
  KVRAG_CHECK(rc == 0, "server: cannot resolve {}: {}", l.host, gai_strerror(rc));
  std::string failure = "no address";
  for (addrinfo* a = found; a != nullptr && I.listen_fd < 0; a = a->ai_next) {
    const int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    // SO_REUSEADDR only: restarts need no wait. (SO_REUSEPORT would let a second server bind
    // the busy port without error and take part of its traffic.)
    int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
      I.listen_fd = fd;
      I.family = a->ai_family;
    } else {
      failure = std::strerror(errno);
      close(fd);
    }
  }
  freeaddrinfo(found);
  KVRAG_CHECK(I.listen_fd >= 0, "server: cannot bind to {}:{} ({})", l.host, l.port, failure);
  sockaddr_storage bound{};
  socklen_t size = sizeof(bound);
  getsockname(I.listen_fd, reinterpret_cast<sockaddr*>(&bound), &size);
  I.port = ntohs(I.family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                      : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return I.port;
}

void HttpDaemon::run() {
  auto& I = *impl_;
  KVRAG_CHECK(I.listen_fd >= 0, "server: run() before bind()");
  {
    std::lock_guard<std::mutex> lock(I.mutex);
    if (I.stop_requested) return;
  }
  I.stopping = false;
  I.pool = std::make_unique<WorkerPool>(I.limits.workers, I.limits.max_queue);
  unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME;
  if (I.family == AF_INET6) flags |= MHD_USE_IPv6;
  I.daemon = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &Impl::access_cb, &I, MHD_OPTION_LISTEN_SOCKET, I.listen_fd,
      MHD_OPTION_NOTIFY_COMPLETED, &Impl::completed_cb, &I, MHD_OPTION_NOTIFY_CONNECTION,
      &Impl::connection_cb, &I, MHD_OPTION_CONNECTION_TIMEOUT,
      static_cast<unsigned>(I.limits.idle_timeout_s), MHD_OPTION_CONNECTION_LIMIT,
      static_cast<unsigned>(I.limits.max_connections), MHD_OPTION_END);
  KVRAG_CHECK(I.daemon != nullptr, "server: cannot start the HTTP daemon on {}:{}", I.limits.host,
              I.port);
  I.watchdog = std::thread([&I] { I.watch(); });
  {
    std::unique_lock<std::mutex> lock(I.mutex);
    I.cv.wait(lock, [&] { return I.stop_requested; });
  }
  // Stop accepting, answer what the workers hold (new requests get 503), give those responses a
  // moment to be sent, then close every connection.
  I.stopping = true;
  I.cv.notify_all();             // the watchdog
  MHD_quiesce_daemon(I.daemon);  // the listening socket stays ours: closed in the destructor
  I.watchdog.join();
  I.pool->drain_and_join();
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  while (I.awaiting_send > 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  MHD_stop_daemon(I.daemon);
  I.daemon = nullptr;
  I.pool.reset();
}

void HttpDaemon::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stop_requested = true;
  }
  impl_->cv.notify_all();
}

int HttpDaemon::port() const { return impl_->port; }
const HttpLimits& HttpDaemon::limits() const { return impl_->limits; }

}  // namespace kvrag
