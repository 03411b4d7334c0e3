#include "serve/server.h"

#include <fmt/format.h>
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

// Model output and corpus text may hold invalid UTF-8 (a token boundary inside a character):
// replaced, never an exception.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

HttpResponse json_response(const json& body) {
  HttpResponse r;
  r.body = dump(body);
  return r;
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

}  // namespace

struct Server::Impl {
  AnswerService& service;
  ServerOptions options;
  std::unique_ptr<HttpDaemon> daemon;
  std::thread thread;  // start()'s

  Impl(AnswerService& s, ServerOptions o) : service(s), options(std::move(o)) {
    KVRAG_CHECK(options.max_top_k >= 1 && options.default_top_k >= 1 &&
                    options.default_top_k <= options.max_top_k,
                "server: default_top_k {} must lie in [1, max_top_k = {}]", options.default_top_k,
                options.max_top_k);
    HttpDaemon::Handler handler;
    handler.on_headers = [this](const HttpRequest& q) { return route(q); };
    handler.answer = [this](const HttpRequest& q) { return answer(q); };
    if (options.access_log) {
      handler.log = [](const HttpRequest& q, const HttpResponse& r) {
        fmt::print(stderr, "{} {} {} {} bytes\n", q.method, q.path, r.status, r.body.size());
      };
    }
    HttpLimits limits = options.http;
    limits.public_paths = {"/"};  // the page: no data until it asks the API, with the key
    daemon = std::make_unique<HttpDaemon>(std::move(handler), limits);
  }

  // The request body as a JSON object with a usable "question" (trimmed).
  std::pair<json, std::string> parse_request(const HttpRequest& req) const {
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

  // An optional field: absent is the default; present, it must be set (null is refused: a
  // client that sends null most likely meant a value it did not have).
  static const json* field(const json& body, const char* name) {
    const auto it = body.find(name);
    if (it == body.end()) return nullptr;
    if (it->is_null()) {
      reject(400, fmt::format("\"{}\" is null (leave it out for the default)", name));
    }
    return &*it;
  }

  int top_k_of(const json& body) const {
    const json* v = field(body, "top_k");
    if (v == nullptr) return options.default_top_k;
    if (!v->is_number_integer()) reject(400, "\"top_k\" must be an integer");
    // A value past int64 (e.g. 2^63) arrives as an unsigned number: compared and printed as one.
    const std::string text = v->dump();
    const auto max = static_cast<uint64_t>(options.max_top_k);
    const bool in_range = v->is_number_unsigned()
                              ? v->get<uint64_t>() >= 1 && v->get<uint64_t>() <= max
                              : v->get<int64_t>() >= 1 && v->get<int64_t>() <= options.max_top_k;
    if (!in_range) {
      reject(400, fmt::format("\"top_k\" = {} is out of range [1, {}]", text, options.max_top_k));
    }
    return static_cast<int>(v->get<int64_t>());
  }

  // "mode" of /v1/ask: one of the service's modes (default: its first).
  AnswerMode mode_of(const json& body) const {
    const auto modes = service.modes();
    KVRAG_CHECK(!modes.empty(), "the answer service offers no mode");
    const json* v = field(body, "mode");
    if (v == nullptr) return modes.front();
    if (!v->is_string()) reject(400, "\"mode\" must be a string");
    const std::string name = v->get<std::string>();
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
    const json* v = field(body, "mode");
    if (v == nullptr) return modes.front();
    if (!v->is_string()) reject(400, "\"mode\" must be a string");
    const std::string name = v->get<std::string>();
    if (std::find(modes.begin(), modes.end(), name) == modes.end()) {
      std::string offered;
      for (const auto& m : modes) offered += (offered.empty() ? "" : ", ") + m;
      reject(400,
             fmt::format("unknown search mode \"{}\" (this server offers: {})", name, offered));
    }
    return name;
  }

  HttpResponse ask(const HttpRequest& req) {
    const auto t0 = Clock::now();
    const auto [body, question] = parse_request(req);
    const AnswerMode mode = mode_of(body);
    const int top_k = top_k_of(body);
    json out = service.ask(question, mode, top_k).to_json();
    out["mode"] = to_string(mode);
    out["timings_ms"]["server"] = ms_since(t0);
    return json_response(out);
  }

  HttpResponse search(const HttpRequest& req) {
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
    return json_response(
        {{"results", results}, {"mode", mode}, {"timings_ms", {{"server", ms_since(t0)}}}});
  }

  HttpResponse health() const {
    auto modes = json::array();
    for (auto m : service.modes()) modes.push_back(to_string(m));
    return json_response({{"status", "ok"},
                          {"models", service.models()},
                          {"modes", modes},
                          {"retriever_modes", service.retriever_modes()},
                          {"limits",
                           {{"max_body_bytes", options.http.max_body_bytes},
                            {"max_question_bytes", options.max_question_bytes},
                            {"max_top_k", options.max_top_k},
                            {"default_top_k", options.default_top_k}}}});
  }

  static HttpResponse page() {
    // The page needs nothing from elsewhere: its own inline script and style, fetch to itself.
    HttpResponse r;
    r.content_type = "text/html; charset=utf-8";
    r.body = web_page_html();
    r.headers = {{"Content-Security-Policy",
                  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                  "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
                  "frame-ancestors 'none'"},
                 {"Referrer-Policy", "no-referrer"}};
    return r;
  }

  // Decided on the headers (the event loop's thread: nothing slow): the page and health at once,
  // 404 and 405 (with Allow) at once, nullopt for the API calls, which read their body.
  std::optional<HttpResponse> route(const HttpRequest& q) const {
    for (const auto& r : kRoutes) {
      if (q.path != r.path) continue;
      if (q.method != r.method) {
        auto e = HttpResponse::error(
            405, fmt::format("{} {}: method not allowed (use {})", q.method, q.path, r.method));
        e.headers.emplace_back("Allow", r.method);
        return e;
      }
      if (q.path == "/") return page();
      if (q.path == "/v1/health") return health();
      return std::nullopt;
    }
    return HttpResponse::error(404, fmt::format("{} {}: not found", q.method, q.path));
  }

  // An API call with its body, on a worker. Every failure becomes a JSON error: the client's
  // mistakes with their status, a kvrag::Error of kind kInput (the request cannot be served as
  // asked: a question too long, a top_k that leaves no room) with 422, any other with 500.
  HttpResponse answer(const HttpRequest& q) {
    try {
      return q.path == "/v1/ask" ? ask(q) : search(q);
    } catch (const RequestError& e) {
      return HttpResponse::error(e.status, e.message);
    } catch (const Error& e) {
      return HttpResponse::error(e.kind() == ErrorKind::kInput ? 422 : 500, e.what());
    } catch (const std::exception& e) {
      return HttpResponse::error(500, fmt::format("internal error: {}", e.what()));
    }
  }
};

Server::Server(AnswerService& service, ServerOptions options)
    : impl_(std::make_unique<Impl>(service, std::move(options))) {}

Server::~Server() { stop(); }

int Server::bind() { return impl_->daemon->bind(); }

void Server::run() { impl_->daemon->run(); }

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
  impl_->daemon->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

HttpResponse Server::handle(const HttpRequest& request) {
  auto now = impl_->route(request);
  return now ? *now : impl_->answer(request);
}

int Server::port() const { return impl_->daemon->port(); }

std::string Server::url() const {
  const std::string& h = impl_->options.http.host;
  const bool v6 = h.find(':') != std::string::npos;
  return fmt::format("http://{}{}{}:{}/", v6 ? "[" : "", h, v6 ? "]" : "", port());
}

const ServerOptions& Server::options() const { return impl_->options; }

}  // namespace kvrag
