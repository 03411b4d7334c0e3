#include "serve/server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"

namespace kvrag {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// A request the client got wrong: answered with `status` and the message.
struct RequestError {
  int status;
  std::string message;
};

[[noreturn]] void reject(int status, std::string message) {
  throw RequestError{status, std::move(message)};
}

const char* kJson = "application/json; charset=utf-8";

// Model output and corpus text may hold invalid UTF-8 (a token boundary inside a character):
// replaced, never an exception.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), kJson);
}

std::string reason(int status) {
  switch (status) {
    case 400:
      return "bad request";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 408:
      return "request timeout";
    case 413:
      return "request body too large";
    case 414:
      return "request URI too long";
    case 415:
      return "unsupported media type";
    case 422:
      return "unprocessable request";
    default:
      return status >= 500 ? "internal server error" : "error";
  }
}

// The paths the server knows, with the one method each accepts (for 405 and Allow).
struct Route {
  const char* path;
  const char* method;
};
constexpr Route kRoutes[] = {
    {"/", "GET"}, {"/v1/health", "GET"}, {"/v1/ask", "POST"}, {"/v1/search", "POST"}};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// httplib::Server with access to its listening socket.
class HttpServer : public httplib::Server {
 public:
  socket_t listening_socket() const { return svr_sock_; }
};

}  // namespace

struct Server::Impl {
  AnswerService& service;
  ServerOptions options;
  HttpServer http;
  int port = -1;
  std::thread thread;  // start()'s
  std::atomic<bool> stop_requested{false};
  std::atomic<bool> running{false};  // inside run()

  Impl(AnswerService& s, ServerOptions o) : service(s), options(std::move(o)) {}

  // The request body as a JSON object with a usable "question" (trimmed).
  std::pair<json, std::string> parse_request(const httplib::Request& req) const {
    json body;
    try {
      body = json::parse(req.body);
    } catch (const json::exception& e) {
      reject(400, fmt::format("request body is not valid JSON: {}", e.what()));
    }
    if (!body.is_object()) reject(400, "request body must be a JSON object");
    if (!body.contains("question")) reject(400, "missing \"question\"");
    if (!body["question"].is_string()) reject(400, "\"question\" must be a string");
    std::string question = trim(body["question"].get<std::string>());
    if (question.empty()) reject(400, "empty \"question\"");
    if (question.size() > options.max_question_bytes) {
      reject(400, fmt::format("\"question\" of {} bytes exceeds the limit of {}", question.size(),
                              options.max_question_bytes));
    }
    return {std::move(body), std::move(question)};
  }

  int top_k_of(const json& body) const {
    if (!body.contains("top_k") || body["top_k"].is_null()) return options.default_top_k;
    const auto& v = body["top_k"];
    if (!v.is_number_integer()) reject(400, "\"top_k\" must be an integer");
    const int64_t k = v.get<int64_t>();
    if (k < 1 || k > options.max_top_k) {
      reject(400, fmt::format("\"top_k\" = {} is out of range [1, {}]", k, options.max_top_k));
    }
    return static_cast<int>(k);
  }

  // "mode" of /v1/ask: one of the service's modes (default: its first).
  AnswerMode mode_of(const json& body) const {
    const auto modes = service.modes();
    KVRAG_CHECK(!modes.empty(), "the answer service offers no mode");
    if (!body.contains("mode") || body["mode"].is_null()) return modes.front();
    if (!body["mode"].is_string()) reject(400, "\"mode\" must be a string");
    const std::string name = body["mode"].get<std::string>();
    AnswerMode mode;
    try {
      mode = parse_answer_mode(name);
    } catch (const Error& e) {
      reject(400, e.what());
    }
    if (std::find(modes.begin(), modes.end(), mode) == modes.end()) {
      std::string offered;
      for (auto m : modes) offered += (offered.empty() ? "" : ", ") + to_string(m);
      reject(400, fmt::format("mode \"{}\" is not available here (this server offers: {})", name,
                              offered));
    }
    return mode;
  }

  std::string retriever_mode_of(const json& body) const {
    const auto modes = service.retriever_modes();
    if (modes.empty()) reject(400, "search needs an index, and this server has none");
    if (!body.contains("mode") || body["mode"].is_null()) return modes.front();
    if (!body["mode"].is_string()) reject(400, "\"mode\" must be a string");
    const std::string name = body["mode"].get<std::string>();
    if (std::find(modes.begin(), modes.end(), name) == modes.end()) {
      std::string offered;
      for (const auto& m : modes) offered += (offered.empty() ? "" : ", ") + m;
      reject(400,
             fmt::format("unknown search mode \"{}\" (this server offers: {})", name, offered));
    }
    return name;
  }

  void ask(const httplib::Request& req, httplib::Response& res) {
    const auto t0 = Clock::now();
    const auto [body, question] = parse_request(req);
    const AnswerMode mode = mode_of(body);
    const int top_k = top_k_of(body);
    json out = service.ask(question, mode, top_k).to_json();
    out["mode"] = to_string(mode);
    out["timings_ms"]["server"] = ms_since(t0);
    send_json(res, 200, out);
  }

  void search(const httplib::Request& req, httplib::Response& res) {
    const auto t0 = Clock::now();
    const auto [body, question] = parse_request(req);
    const std::string mode = retriever_mode_of(body);
    const int top_k = top_k_of(body);
    auto results = json::array();
    for (const auto& e : service.search(question, top_k, mode)) {
      results.push_back({{"segment_id", e.segment_id},
                         {"doc_id", e.doc_id},
                         {"title", e.title},
                         {"text", e.text},
                         {"score", e.score}});
    }
    send_json(res, 200,
              {{"results", results}, {"mode", mode}, {"timings_ms", {{"server", ms_since(t0)}}}});
  }

  void health(const httplib::Request&, httplib::Response& res) {
    auto modes = json::array();
    for (auto m : service.modes()) modes.push_back(to_string(m));
    send_json(res, 200,
              {{"status", "ok"},
               {"models", service.models()},
               {"modes", modes},
               {"retriever_modes", service.retriever_modes()},
               {"limits",
                {{"max_body_bytes", options.max_body_bytes},
                 {"max_question_bytes", options.max_question_bytes},
                 {"max_top_k", options.max_top_k},
                 {"default_top_k", options.default_top_k}}}});
  }

  // Wraps a handler so that every failure becomes a JSON error: the client's mistakes with their
  // status, a kvrag::Error of kind kInput (the request cannot be served as asked: a question too
  // long, a top_k that leaves no room) with 422, any other failure while answering with 500.
  httplib::Server::Handler guarded(void (Impl::*handler)(const httplib::Request&,
                                                         httplib::Response&)) {
    return [this, handler](const httplib::Request& req, httplib::Response& res) {
      try {
        (this->*handler)(req, res);
      } catch (const RequestError& e) {
        send_json(res, e.status, {{"error", e.message}});
      } catch (const Error& e) {
        send_json(res, e.kind() == ErrorKind::kInput ? 422 : 500, {{"error", e.what()}});
      } catch (const std::exception& e) {
        send_json(res, 500, {{"error", fmt::format("internal error: {}", e.what())}});
      }
    };
  }

  void setup() {
    KVRAG_CHECK(options.workers >= 1, "server: workers must be at least 1, not {}",
                options.workers);
    KVRAG_CHECK(options.max_top_k >= 1 && options.default_top_k >= 1 &&
                    options.default_top_k <= options.max_top_k,
                "server: default_top_k {} must lie in [1, max_top_k = {}]", options.default_top_k,
                options.max_top_k);
    const size_t workers = static_cast<size_t>(options.workers);
    http.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
    http.set_payload_max_length(options.max_body_bytes);
    http.set_read_timeout(options.timeout_s);
    http.set_write_timeout(options.timeout_s);
    // Idle keep-alive connections hold a worker; a short timeout also lets stop() finish quickly.
    http.set_keep_alive_timeout(2);
    // Responses go out at once (Nagle's algorithm would hold the last small segment of each).
    http.set_tcp_nodelay(true);
    // httplib's default also sets SO_REUSEPORT, with which a second server on a busy port binds
    // without error and steals part of its traffic: only SO_REUSEADDR (restarts need no wait).
    http.set_socket_options([](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    });
    http.set_default_headers(
        {{"X-Content-Type-Options", "nosniff"}, {"Cache-Control", "no-store"}});

    if (options.access_log) {
      http.set_logger([](const httplib::Request& req, const httplib::Response& res) {
        fmt::print(stderr, "{} {} {} {} bytes\n", req.method, req.path, res.status,
                   res.body.size());
      });
    }
    http.Get("/", [](const httplib::Request&, httplib::Response& res) {
      // The page needs nothing from elsewhere: its own inline script and style, fetch to itself.
      res.set_header(
          "Content-Security-Policy",
          "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src "
          "'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
      res.set_header("Referrer-Policy", "no-referrer");
      res.set_content(web_page_html(), "text/html; charset=utf-8");
    });
    http.Get("/v1/health", guarded(&Impl::health));
    http.Post("/v1/ask", guarded(&Impl::ask));
    http.Post("/v1/search", guarded(&Impl::search));

    // Errors httplib raises itself (no route, 413, malformed requests) get the same JSON shape;
    // a known path asked with the wrong method becomes 405 with Allow.
    const size_t limit = options.max_body_bytes;
    http.set_error_handler(httplib::Server::HandlerWithResponse(
        [limit](const httplib::Request& req, httplib::Response& res) {
          // ours, already JSON
          if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
          if (res.status == 404) {
            for (const auto& r : kRoutes) {
              if (req.path == r.path && req.method != r.method) {
                res.status = 405;
                res.set_header("Allow", r.method);
                res.set_content(dump({{"error", fmt::format("{} {}: method not allowed (use {})",
                                                            req.method, req.path, r.method)}}),
                                kJson);
                return httplib::Server::HandlerResponse::Handled;
              }
            }
            res.set_content(
                dump({{"error", fmt::format("{} {}: not found", req.method, req.path)}}), kJson);
            return httplib::Server::HandlerResponse::Handled;
          }
          std::string message = reason(res.status);
          if (res.status == 413) message += fmt::format(" (limit {} bytes)", limit);
          res.set_content(dump({{"error", message}}), kJson);
          return httplib::Server::HandlerResponse::Handled;
        }));
    http.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
          send_json(res, 500, {{"error", "internal error"}});
        });
  }
};

Server::Server(AnswerService& service, ServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {
  impl_->setup();
}

Server::~Server() { stop(); }

int Server::bind() {
  auto& o = impl_->options;
  KVRAG_CHECK(o.port >= 0 && o.port <= 65535, "server: port {} is out of range", o.port);
  if (o.port == 0) {
    impl_->port = impl_->http.bind_to_any_port(o.host);
    KVRAG_CHECK(impl_->port > 0, "server: cannot bind to {} (any port)", o.host);
  } else {
    KVRAG_CHECK(impl_->http.bind_to_port(o.host, o.port),
                "server: cannot bind to {}:{} (address in use, or not an address of this machine)",
                o.host, o.port);
    impl_->port = o.port;
  }
  // httplib listens with a backlog of 5: a burst of more new connections than that overflows the
  // accept queue, and the dropped SYNs are retried only after a second. Listening again on the
  // bound socket raises the backlog.
  ::listen(impl_->http.listening_socket(), SOMAXCONN);
  return impl_->port;
}

void Server::run() {
  KVRAG_CHECK(impl_->port > 0, "server: run() before bind()");
  // stop() checks `running` after setting stop_requested; we check stop_requested after setting
  // `running`: one of the two sees the other, so a stop() racing a starting run() is never lost.
  impl_->running = true;
  if (!impl_->stop_requested) impl_->http.listen_after_bind();
  impl_->running = false;
}

int Server::start() {
  const int port = bind();
  impl_->thread = std::thread([this] { run(); });
  return port;
}

namespace {
int g_stop_pipe[2] = {-1, -1};

extern "C" void on_stop_signal(int sig) {
  const unsigned char byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] auto written = write(g_stop_pipe[1], &byte, 1);  // async-signal-safe
}
}  // namespace

void Server::run_until_signal() {
  // The handler (on whichever thread the signal lands) only writes the signal number into a
  // pipe; a watcher thread reads it and stops the server, which finishes the requests in flight.
  // A 0 byte from this thread ends the watcher otherwise.
  KVRAG_CHECK(pipe(g_stop_pipe) == 0, "serve: cannot create a pipe");
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {};
  struct sigaction old_term {};
  sigaction(SIGINT, &action, &old_int);
  sigaction(SIGTERM, &action, &old_term);
  std::thread watcher([this] {
    unsigned char sig = 0;
    while (read(g_stop_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    if (sig == 0) return;
    fmt::print(stderr, "kvrag serve: {}, finishing requests in flight\n",
               sig == SIGINT ? "interrupted" : "terminated");
    stop();
  });
  run();
  const unsigned char done = 0;
  [[maybe_unused]] auto written = write(g_stop_pipe[1], &done, 1);
  watcher.join();
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  close(g_stop_pipe[0]);
  close(g_stop_pipe[1]);
}

void Server::stop() {
  impl_->stop_requested = true;
  // A run() that has begun but not yet entered its accept loop would miss http.stop(): wait for
  // the loop (or for run() to end).
  while (impl_->running && !impl_->http.is_running())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->http.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int Server::port() const { return impl_->port; }

std::string Server::url() const {
  const std::string& h = impl_->options.host;
  const bool v6 = h.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}/", v6 ? "[" : "", h, v6 ? "]" : "", impl_->port);
}

const ServerOptions& Server::options() const { return impl_->options; }

}  // namespace kvrag
