// Load check of `kvrag serve`: --requests POSTs from --clients concurrent clients (each with its
// own keep-alive connection), then the latency percentiles, the throughput and the error count.
//
//   bench_serve [--requests 200] [--clients 8] [--endpoint ask|search] [--mode MODE] [--top-k 3]
//               [--url http://127.0.0.1:8080 | --workspace DIR [--workers 8]] [--questions Q.jsonl]
//
// --url loads a running server. Otherwise the server runs in this process: over the models of a
// `kvrag demo` workspace with --workspace (questions from its questions-test.jsonl), else over a
// stand-in service that answers instantly, which measures the HTTP and JSON layer alone.
// An error is any failed connection, non-200 status or response without an "answer"/"results".
// Exit status 1 if there were errors.

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

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
  Answer ask(const std::string& question, AnswerMode mode, int top_k) override {
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
                    {"questions", ""}},
                   {});
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
      service = std::make_unique<StandInService>();
      what = "in-process server over a stand-in service (HTTP and JSON only)";
    }
    ServerOptions so;
    so.port = 0;
    so.workers = static_cast<int>(args.integer("workers"));
    server = std::make_unique<Server>(*service, so);
    port = server->start();
  }
  if (questions.empty()) {
    for (int i = 0; i < 50; ++i)
      questions.push_back(fmt::format("what is the capital of country number {}?", i));
  }

  json body_template{{"top_k", args.integer("top-k")}};
  if (!args.str("mode").empty()) body_template["mode"] = args.str("mode");

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
  std::vector<double> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());

  fmt::print("bench_serve: {} POST /v1/{} from {} clients against {}\n", requests, endpoint,
             clients, what);
  fmt::print("  latency ms: p50 {:.1f}  p90 {:.1f}  p99 {:.1f}  max {:.1f}\n", percentile(all, 50),
             percentile(all, 90), percentile(all, 99), percentile(all, 100));
  fmt::print("  throughput: {:.1f} requests/s ({:.2f} s)\n", requests / seconds, seconds);
  fmt::print("  errors: {}{}\n", errors.load(),
             first_error.empty() ? "" : " (first: " + first_error + ")");
  if (server) server->stop();
  return errors == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "bench_serve: error: " << e.what() << "\n";
    return 2;
  }
}
