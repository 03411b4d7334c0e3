// The web service behind `kvrag serve`: a JSON API and one web page over an AnswerService.
//
//   GET  /            the page (HTML, CSS and JS compiled into the binary; no other static paths,
//                     so there is nothing to traverse)
//   GET  /v1/health   {"status": "ok", "models": {...}, "modes": [...], "retriever_modes": [...],
//                     "limits": {...}}
//   POST /v1/ask      {"question", "mode"?, "top_k"?}
//                     → {"answer", "evidence": [{"segment_id","title","text","score"}],
//                        "groundedness", "timings_ms"}   (Answer::to_json)
//   POST /v1/search   {"question", "top_k"?, "mode"?: dense|bm25|hybrid}
//                     → {"results": [{"segment_id","doc_id","title","text","score"}]}
//
// Errors are JSON {"error": message} with 400 (bad JSON, missing or empty question, unknown mode,
// top_k out of range, question over the length limit), 404 (unknown path), 405 (wrong method, with
// Allow), 422 (a request the models cannot serve as asked: a kvrag::Error of kind kInput, e.g. a
// prompt that leaves no room), 500 (any other failure while answering), and the refusals of the
// HTTP front before a body is read (serve/http_daemon.h: 401, 403, 411, 413, 415, 503).
//
// Connections are read by one event loop (libmicrohttpd), so slow clients hold no thread;
// /v1/ask and /v1/search are answered by `workers` threads that share the one service:
// AnswerService implementations must be thread-safe. The page and /v1/health are answered at once.
// The server binds to 127.0.0.1 unless told otherwise, and elsewhere only with an API key or
// `insecure`. Torch-free: the service that wraps the models lives in serve/answerer_service.h.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "qa/answerer.h"
#include "serve/http_daemon.h"

namespace kvrag {

// What the server answers with. Every method may be called from several threads at once.
class AnswerService {
 public:
  virtual ~AnswerService() = default;

  // Answers one question. Throws Error on failure (kind kInput: 422, else 500).
  virtual Answer ask(const std::string& question, AnswerMode mode, int top_k) = 0;
  // The top_k segments for a question with `retriever_mode` (one of retriever_modes()).
  virtual std::vector<Evidence> search(const std::string& question, int top_k,
                                       const std::string& retriever_mode) = 0;

  // The answer modes this service can serve (e.g. no prefix modes without a knowledge encoder);
  // the first is the default.
  virtual std::vector<AnswerMode> modes() const = 0;
  // The retriever modes /v1/search accepts (empty: no index); the first is the default.
  virtual std::vector<std::string> retriever_modes() const = 0;
  // What is loaded, for /v1/health and the page: {"llm": NAME, "index": NAME, ...}, folder
  // names rather than paths (a response does not tell clients where the server's files are).
  virtual nlohmann::json models() const = 0;
};

struct ServerOptions {
  HttpLimits http;                   // address, threads, connection and body limits, access
  size_t max_question_bytes = 2048;  // longer questions get 400
  int max_top_k = 20;                // top_k must lie in [1, max_top_k]
  int default_top_k = 5;
  bool access_log = false;  // one line per request on stderr
};

class Server {
 public:
  Server(AnswerService& service, ServerOptions options = {});
  ~Server();  // stops and joins
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and returns the bound port; Error naming the address if that fails.
  int bind();
  // Serves until stop() is called (from another thread). bind() first.
  void run();
  // run() until Ctrl-C or SIGTERM, which finish the requests in flight; the previous handlers
  // are restored on return. bind() first.
  void run_until_signal();
  // bind() and run() on a background thread; returns the port.
  int start();
  // Stops serving (thread- and repeat-safe); run() returns, start()'s thread is joined.
  void stop();

  // Answers one request as the HTTP front hands it over once it passed the front's checks
  // (routing, then the API call), without a socket: for tests and the fuzz harness.
  HttpResponse handle(const HttpRequest& request);

  int port() const;
  std::string url() const;  // "http://HOST:PORT/"
  const ServerOptions& options() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The web page served at "/" (serve/web_page.cpp).
const std::string& web_page_html();

}  // namespace kvrag
