// Load check of `kvrag serve`: --requests POSTs from --clients concurrent clients (each with its
// own keep-alive connection), then the latency percentiles, the throughput and the error count.
//
//   bench_serve [--requests 200] [--clients 8] [--endpoint ask|search] [--mode MODE|mixed]
//               [--top-k 3] [--url http://127.0.0.1:8080 | --workspace DIR [--workers 8]]
//               [--questions Q.jsonl] [--hostile [--slow 32]]
//
// --mode mixed cycles through the modes the server offers (/v1/health). --hostile runs, beside the
// well-behaved clients, --slow slow-loris connections (a header line every second, reconnecting
// when the server closes them) and a stream of bad requests (oversized, chunked, without length,
// malformed JSON, not HTTP), and reports what each got and the server's memory (in-process only).
//
// --url loads a running server. Otherwise the server runs in this process: over the models of a
// `kvrag demo` workspace with --workspace (questions from its questions-test.jsonl), else over a
// stand-in service that answers instantly (or after --service-ms, sleeping like a model that
// takes that long), which measures the HTTP and JSON layer alone.
// An error is any failed connection, non-200 status or response without an "answer"/"results".
// Exit status 1 if there were errors.

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "../tests/serve/raw_http.h"  // a client that sends exactly the bytes given
#include "bench_common.h"
#include "core/error.h"
#include "serve/answerer_service.h"
#include "serve/server.h"

namespace {

using json = nlohmann::json;
using namespace kvrag;

// Answers at once with five fixed segments: what is left to measure is the server.
class StandInService final : public AnswerService {
 public:
  explicit StandInService(int busy_ms) : busy_ms_(busy_ms) {}
  Answer ask(const std::string& question, AnswerMode mode, int top_k) override {
    // A model's time, without its CPU: the server's threads are what is measured.
    if (busy_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(busy_ms_));
    Answer a;
    a.text = "an answer to " + question;
    if (mode != AnswerMode::kNone) a.evidence = search(question, top_k, "bm25");
    return a;
  }
  std::vector<Evidence> search(const std::string& question, int top_k,
                               const std::string&) override {
    std::vector<Evidence> out;
    for (int i = 0; i < top_k; ++i) {
      out.push_back({i, "doc" + std::to_string(i), "Title " + std::to_string(i),
                     "A segment of about two hundred characters that mentions " + question +
                         " and goes on for a while, like the passages of a real corpus do, so that "
                         "the response has a realistic size.",
                     1.0 / (i + 1)});
    }
    return out;
  }
  std::vector<AnswerMode> modes() const override {
    return {AnswerMode::kPrefix, AnswerMode::kContextPrefix, AnswerMode::kContext,
            AnswerMode::kNone};
  }
  std::vector<std::string> retriever_modes() const override { return {"bm25"}; }
  json models() const override { return {{"llm", "stand-in"}}; }

 private:
  int busy_ms_;
};

std::vector<std::string> read_questions(const std::string& path) {
  std::ifstream in(path);
  KVRAG_CHECK(in, "cannot read {}", path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const json j = json::parse(line, nullptr, false);
    KVRAG_CHECK(j.is_object() && j.contains("question") && j["question"].is_string(),
                "{}: expected {{\"question\"}} lines", path);
    out.push_back(j["question"].get<std::string>());
  }
  KVRAG_CHECK(!out.empty(), "{}: no questions", path);
  return out;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()));
  return v[i];
}

// The clients nobody wants: slow-loris connections and a stream of bad requests, with counts of
// what the server answered.
struct Hostile {
  std::mutex mutex;
  std::map<std::string, std::map<int, int>> answers;  // kind → status → count (0: no answer)
  std::atomic<int> slow_opened{0}, slow_closed{0};
  std::vector<double> health_ms;  // GET /v1/health latencies meanwhile

  void count(const std::string& kind, int status) {
    std::lock_guard<std::mutex> lock(mutex);
    ++answers[kind][status];
  }

  // `n` connections that send a request's first line and then one header line a second, forever;
  // reopened when the server closes them.
  void slow_loris(int port, int64_t n, const std::atomic<bool>& finished) {
    std::vector<std::unique_ptr<test::RawConnection>> conns(static_cast<size_t>(n));
    while (!finished) {
      for (auto& c : conns) {
        if (c && c->send("X-Slow: 1\r\n")) continue;
        if (c) ++slow_closed;
        c = std::make_unique<test::RawConnection>(port);
        c->send("POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        ++slow_opened;
      }
      for (int i = 0; i < 10 && !finished; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  // Bad requests in turn, each on a new connection, until `finished`.
  void bad_requests(int port, const std::atomic<bool>& finished) {
    const std::string head = "POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    const std::string json_type = "Content-Type: application/json\r\n";
    const std::vector<std::pair<std::string, std::string>> kinds = {
        {"oversized (Content-Length 200 MB, no body sent)",
         head + json_type + "Content-Length: 209715200\r\n\r\n"},
        {"chunked", head + json_type + "Transfer-Encoding: chunked\r\n\r\n10000\r\n" +
                        std::string(65536, 'x')},
        {"no Content-Length", head + json_type + "\r\n{\"question\": \"q\"}"},
        {"malformed JSON", head + json_type + "Content-Length: 13\r\n\r\n{\"question\": "},
        {"form-encoded", head + "Content-Type: application/x-www-form-urlencoded\r\n"
                                "Content-Length: 12\r\n\r\nquestion=abc"},
        {"not HTTP", "\x16\x03\x01 this is not a request line\r\n\r\n"}};
    for (size_t i = 0; !finished; ++i) {
      const auto& [kind, bytes] = kinds[i % kinds.size()];
      test::RawConnection c(port);
      c.send(bytes);
      count(kind, test::status_of(c.read_response(10)));
      if (i % kinds.size() == 0) {  // and is the server still there for everyone else?
        test::RawConnection h(port);
        const double t0 = bench::now_seconds();
        h.send("GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        count("GET /v1/health", test::status_of(h.read_response(10)));
        std::lock_guard<std::mutex> lock(mutex);
        health_ms.push_back((bench::now_seconds() - t0) * 1000);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  void report() {
    fmt::print("  slow-loris: {} connections opened, {} closed by the server (request deadline)\n",
               slow_opened.load(), slow_closed.load());
    for (const auto& [kind, statuses] : answers) {
      std::string line;
      for (const auto& [status, n] : statuses)
        line += fmt::format("{}{} × {}", line.empty() ? "" : ", ", n,
                            status == 0 ? std::string("no answer") : std::to_string(status));
      fmt::print("  {}: {}\n", kind, line);
    }
    if (!health_ms.empty()) {
      fmt::print("  GET /v1/health meanwhile: max {:.1f} ms over {}\n",
                 *std::max_element(health_ms.begin(), health_ms.end()), health_ms.size());
    }
  }
};

int run(int argc, char** argv) {
  bench::Args args(argc, argv,
                   {{"requests", "200"},
                    {"clients", "8"},
                    {"endpoint", "ask"},
                    {"mode", ""},
                    {"top-k", "3"},
                    {"url", ""},
                    {"workspace", ""},
                    {"workers", "8"},
                    {"questions", ""},
                    {"slow", "32"},
                    {"service-ms", "0"}},
                   {"hostile"});
  const int requests = static_cast<int>(args.integer("requests"));
  const int clients = static_cast<int>(args.integer("clients"));
  const std::string endpoint = args.str("endpoint");
  KVRAG_CHECK(endpoint == "ask" || endpoint == "search", "--endpoint is ask or search");
  KVRAG_CHECK(requests >= 1 && clients >= 1, "--requests and --clients must be positive");

  std::vector<std::string> questions;
  if (!args.str("questions").empty()) questions = read_questions(args.str("questions"));

  // The server: given, or started here.
  std::unique_ptr<AnswerService> service;
  std::unique_ptr<Server> server;
  std::string host = "127.0.0.1";
  int port = 0;
  std::string what;
  if (!args.str("url").empty()) {
    std::smatch m;
    const std::string url = args.str("url");
    KVRAG_CHECK(std::regex_match(url, m, std::regex(R"(http://([^:/]+):(\d+)/?)")),
                "--url must be http://HOST:PORT");
    host = m[1];
    port = std::stoi(m[2]);
    what = url;
  } else {
    const std::string ws = args.str("workspace");
    if (!ws.empty()) {
      AnswererOptions o;
      o.llm_dir = ws + "/llm";
      if (std::filesystem::is_directory(ws + "/index")) o.index_dir = ws + "/index";
      if (std::filesystem::is_directory(ws + "/knowledge_encoder"))
        o.knowledge_encoder_dir = ws + "/knowledge_encoder";
      if (!o.index_dir.empty() && !std::filesystem::is_directory(o.index_dir + "/embeddings"))
        o.retriever.mode = RetrieverMode::kBm25;
      service = AnswererService::open(o);
      if (questions.empty() && std::filesystem::exists(ws + "/questions-test.jsonl")) {
        questions = read_questions(ws + "/questions-test.jsonl");
      }
      what = "in-process server over " + ws;
    } else {
      service = std::make_unique<StandInService>(static_cast<int>(args.integer("service-ms")));
      what = "in-process server over a stand-in service (HTTP and JSON only)";
    }
    ServerOptions so;
    so.http.port = 0;
    so.http.workers = static_cast<int>(args.integer("workers"));
    server = std::make_unique<Server>(*service, so);
    port = server->start();
  }
  if (questions.empty()) {
    for (int i = 0; i < 50; ++i)
      questions.push_back(fmt::format("what is the capital of country number {}?", i));
  }

  json body_template{{"top_k", args.integer("top-k")}};
  std::vector<std::string> modes;  // one per request in turn; empty: the server's default
  if (args.str("mode") == "mixed") {
    httplib::Client c(host, port);
    auto r = c.Get("/v1/health");
    KVRAG_CHECK(r && r->status == 200, "GET /v1/health failed");
    for (const auto& m : json::parse(r->body)["modes"]) modes.push_back(m.get<std::string>());
  } else if (!args.str("mode").empty()) {
    modes.push_back(args.str("mode"));
  }
  if (!modes.empty()) body_template["mode"] = modes.front();

  // One warm-up request (first-touch costs: model pages, allocator), not counted.
  {
    httplib::Client c(host, port);
    c.set_read_timeout(600);
    json body = body_template;
    body["question"] = questions[0];
    auto r = c.Post(("/v1/" + endpoint).c_str(), body.dump(), "application/json");
    KVRAG_CHECK(r && r->status == 200, "warm-up request failed: {}",
                r ? fmt::format("{} {}", r->status, r->body) : httplib::to_string(r.error()));
  }

  const int64_t rss_before = bench::proc_status_bytes("VmRSS");
  std::atomic<bool> finished{false};
  Hostile hostile;
  std::vector<std::thread> attackers;
  if (args.flag("hostile")) {
    attackers.emplace_back([&] { hostile.slow_loris(port, args.integer("slow"), finished); });
    attackers.emplace_back([&] { hostile.bad_requests(port, finished); });
  }

  std::atomic<int> next{0}, errors{0};
  std::vector<std::vector<double>> latencies(clients);
  std::string first_error;
  std::mutex error_mutex;
  const double t0 = bench::now_seconds();
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      httplib::Client c(host, port);
      c.set_keep_alive(true);
      c.set_tcp_nodelay(true);
      c.set_read_timeout(600);
      for (int i; (i = next++) < requests;) {
        json body = body_template;
        body["question"] = questions[i % questions.size()];
        if (modes.size() > 1) body["mode"] = modes[i % modes.size()];
        const double s = bench::now_seconds();
        auto r = c.Post(("/v1/" + endpoint).c_str(), body.dump(), "application/json");
        const double ms = (bench::now_seconds() - s) * 1000;
        bool ok = r && r->status == 200;
        if (ok) {
          const json j = json::parse(r->body, nullptr, false);
          ok = j.is_object() && j.contains(endpoint == "ask" ? "answer" : "results");
        }
        if (!ok) {
          ++errors;
          std::lock_guard<std::mutex> lock(error_mutex);
          if (first_error.empty())
            first_error =
                r ? fmt::format("{} {}", r->status, r->body) : httplib::to_string(r.error());
        }
        latencies[t].push_back(ms);
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = bench::now_seconds() - t0;
  finished = true;
  for (auto& t : attackers) t.join();
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());

  fmt::print("bench_serve: {} POST /v1/{} from {} clients against {}\n", requests, endpoint,
             clients, what);
  fmt::print("  latency ms: p50 {:.1f}  p90 {:.1f}  p99 {:.1f}  max {:.1f}\n", percentile(all, 50),
             percentile(all, 90), percentile(all, 99), percentile(all, 100));
  fmt::print("  throughput: {:.1f} requests/s ({:.2f} s)\n", requests / seconds, seconds);
  fmt::print("  errors: {}{}\n", errors.load(),
             first_error.empty() ? "" : " (first: " + first_error + ")");
  if (args.flag("hostile")) hostile.report();
  if (server) {
    fmt::print(
        "  server memory (this process): RSS {:.1f} MB before, {:.1f} MB after, peak {:.1f} MB\n",
        rss_before / 1e6, bench::proc_status_bytes("VmRSS") / 1e6,
        bench::proc_status_bytes("VmHWM") / 1e6);
  }
  if (server) server->stop();
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  kvrag::tune_malloc();  // as the kvrag binary does (core/malloc_tuning.h)
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_serve: error: " << e.what() << "\n";
    return 2;
  }
}
