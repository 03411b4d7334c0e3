// The HTTP API and the page of `kvrag serve`, over a fake AnswerService
// (tests/serve/fake_service.h), with a real socket and httplib's client.

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "fake_service.h"
#include "serve/server.h"
#include "support/test_support.h"

namespace kvrag::test {
namespace {

using json = nlohmann::json;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.http.port = 0;
    o.http.workers = 8;
    o.http.max_body_bytes = 4096;
    o.max_question_bytes = 200;
    o.max_top_k = 10;
    o.default_top_k = 4;
    server_ = std::make_unique<Server>(service_, o);
    port_ = server_->start();
  }
  void TearDown() override { server_->stop(); }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30);
    c.set_tcp_nodelay(true);
    return c;
  }
  httplib::Result post(const std::string& path, const std::string& body) const {
    return client().Post(path.c_str(), body, "application/json");
  }
  httplib::Result post(const std::string& path, const json& body) const {
    return post(path, body.dump());
  }

  // Asserts a JSON error response with `status`; returns its message.
  static std::string error_message(const httplib::Result& r, int status) {
    EXPECT_TRUE(r) << "no response: " << httplib::to_string(r.error());
    if (!r) return "";
    EXPECT_EQ(r->status, status) << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json; charset=utf-8");
    const json j = json::parse(r->body, nullptr, false);
    EXPECT_TRUE(j.is_object() && j.contains("error") && j["error"].is_string()) << r->body;
    return j.is_object() && j.contains("error") && j["error"].is_string()
               ? j["error"].get<std::string>()
               : "";
  }

  FakeService service_;
  std::unique_ptr<Server> server_;
  int port_ = 0;
};

TEST_F(ServerTest, BindsToLoopbackByDefault) {
  EXPECT_EQ(ServerOptions{}.http.host, "127.0.0.1");
  EXPECT_EQ(server_->url(), "http://127.0.0.1:" + std::to_string(port_) + "/");
}

TEST_F(ServerTest, Health) {
  auto r = client().Get("/v1/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  const json j = json::parse(r->body);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["models"]["llm"], "fake-llm");
  EXPECT_EQ(j["modes"], json({"context", "none"}));
  EXPECT_EQ(j["retriever_modes"], json({"bm25", "dense"}));
  EXPECT_EQ(j["limits"]["max_top_k"], 10);
  EXPECT_EQ(j["limits"]["max_body_bytes"], 4096);
}

TEST_F(ServerTest, AskReturnsAnswerEvidenceGroundednessAndTimings) {
  auto r = post("/v1/ask",
                json{{"question", "  who built the tower?\n"}, {"mode", "context"}, {"top_k", 3}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json; charset=utf-8");
  const json j = json::parse(r->body);
  // the question reached the service trimmed
  EXPECT_EQ(j["answer"], "answer to who built the tower?");
  EXPECT_EQ(j["mode"], "context");
  ASSERT_EQ(j["evidence"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const auto& e = j["evidence"][i];
    EXPECT_EQ(e["segment_id"], 100 + i);
    EXPECT_EQ(e["title"], "Title " + std::to_string(i) + " <script>window.pwned=1</script>");
    EXPECT_NE(e["text"].get<std::string>().find("answer to who built the tower?"),
              std::string::npos);
    EXPECT_DOUBLE_EQ(e["score"].get<double>(), 1.0 / (i + 1));
  }
  EXPECT_EQ(j["groundedness"]["answer_in_evidence"], true);
  EXPECT_DOUBLE_EQ(j["groundedness"]["logprob_with"].get<double>(), -0.25);
  EXPECT_DOUBLE_EQ(j["timings_ms"]["total"].get<double>(), 4.0);
  EXPECT_GE(j["timings_ms"]["server"].get<double>(), 0.0);
}

TEST_F(ServerTest, AskDefaultsToTheFirstModeAndDefaultTopK) {
  auto r = post("/v1/ask", json{{"question", "q"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["mode"], "context");
  EXPECT_EQ(j["evidence"].size(), 4u);

  r = post("/v1/ask", json{{"question", "q"}, {"mode", "none"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_TRUE(json::parse(r->body)["evidence"].empty());
}

TEST_F(ServerTest, BadRequestsGet400WithAReason) {
  EXPECT_NE(
      error_message(post("/v1/ask", std::string("{\"question\": ")), 400).find("not valid JSON"),
      std::string::npos);
  EXPECT_NE(error_message(post("/v1/ask", std::string("")), 400).find("not valid JSON"),
            std::string::npos);
  EXPECT_NE(error_message(post("/v1/ask", std::string("\"question\"")), 400).find("JSON object"),
            std::string::npos);
  EXPECT_NE(
      error_message(post("/v1/ask", json{{"mode", "none"}}), 400).find("missing \"question\""),
      std::string::npos);
  EXPECT_NE(error_message(post("/v1/ask", json{{"question", 42}}), 400).find("must be a string"),
            std::string::npos);
  EXPECT_NE(error_message(post("/v1/ask", json{{"question", " \t\n"}}), 400).find("empty"),
            std::string::npos);
  EXPECT_NE(error_message(post("/v1/ask", json{{"question", std::string(201, 'x')}}), 400)
                .find("201 bytes"),
            std::string::npos);
  EXPECT_NE(error_message(post("/v1/ask", json{{"question", "q"}, {"mode", "telepathy"}}), 400)
                .find("telepathy"),
            std::string::npos);
  // A real mode this server cannot serve (the fake has no knowledge encoder).
  EXPECT_NE(error_message(post("/v1/ask", json{{"question", "q"}, {"mode", "prefix"}}), 400)
                .find("offers: context, none"),
            std::string::npos);
  EXPECT_NE(
      error_message(post("/v1/ask", json{{"question", "q"}, {"mode", 3}}), 400).find("\"mode\""),
      std::string::npos);
  for (const json& k : {json(0), json(11), json(-1), json(2.5), json("3"), json(1e12)}) {
    EXPECT_NE(
        error_message(post("/v1/ask", json{{"question", "q"}, {"top_k", k}}), 400).find("top_k"),
        std::string::npos)
        << k;
  }
  // Invalid UTF-8 inside a JSON string is bad JSON.
  EXPECT_NE(error_message(post("/v1/ask", std::string("{\"question\": \"caf\xc3\"}")), 400)
                .find("not valid JSON"),
            std::string::npos);
  EXPECT_EQ(service_.asks.load(), 0) << "no bad request reached the service";
}

TEST_F(ServerTest, OversizedBodyGets413) {
  const json big{{"question", "q"}, {"padding", std::string(5000, 'p')}};
  const std::string message = error_message(post("/v1/ask", big), 413);
  EXPECT_NE(message.find("4096"), std::string::npos) << message;
  EXPECT_EQ(service_.asks.load(), 0);
  // The server is still fine afterwards.
  auto r = post("/v1/ask", json{{"question", "q"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerTest, ServiceErrorsGet500WithTheMessage) {
  EXPECT_NE(error_message(post("/v1/ask", json{{"question", "fail"}}), 500).find("out of cheese"),
            std::string::npos);
}

TEST_F(ServerTest, RequestsTheModelsCannotServeAsAskedGet422) {
  EXPECT_NE(error_message(post("/v1/ask", json{{"question", "too long"}}), 422).find("300 tokens"),
            std::string::npos);
}

TEST_F(ServerTest, UnknownPathsGet404AndWrongMethods405) {
  auto c = client();
  EXPECT_NE(error_message(c.Get("/nope"), 404).find("/nope"), std::string::npos);
  EXPECT_NE(error_message(c.Get("/v1/asks"), 404).find("not found"), std::string::npos);
  // No static files are served: traversal attempts find nothing.
  for (const char* path : {"/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
                           "/index.html", "//etc/passwd", "/v1/../../etc/passwd"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_TRUE(r->status == 404 || r->status == 400) << path << " → " << r->status;
    EXPECT_EQ(r->body.find("root:"), std::string::npos) << path;
  }
  auto r = c.Get("/v1/ask");
  EXPECT_NE(error_message(r, 405).find("use POST"), std::string::npos);
  EXPECT_EQ(r->get_header_value("Allow"), "POST");
  r = c.Post("/v1/health", "{}", "application/json");
  error_message(r, 405);
  EXPECT_EQ(r->get_header_value("Allow"), "GET");
  r = c.Post("/", "{}", "application/json");
  error_message(r, 405);
  r = c.Delete("/v1/search");
  error_message(r, 405);
  EXPECT_EQ(r->get_header_value("Allow"), "POST");
}

TEST_F(ServerTest, HandleAnswersWithoutASocketAsOverOne) {
  HttpRequest q{"POST", "/v1/ask", json{{"question", "q"}, {"top_k", 2}}.dump()};
  HttpResponse r = server_->handle(q);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["evidence"].size(), 2u);
  q.body = "{";
  EXPECT_EQ(server_->handle(q).status, 400);
  EXPECT_EQ(server_->handle({"GET", "/v1/ask", ""}).status, 405);
  EXPECT_EQ(server_->handle({"GET", "/v1/health", ""}).status, 200);
  EXPECT_EQ(server_->handle({"GET", "/nope", ""}).status, 404);
}

TEST_F(ServerTest, Search) {
  auto r = post("/v1/search", json{{"question", "the tower"}, {"top_k", 2}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = json::parse(r->body);
  EXPECT_EQ(j["mode"], "bm25");  // the service's first
  ASSERT_EQ(j["results"].size(), 2u);
  EXPECT_EQ(j["results"][1]["segment_id"], 101);
  EXPECT_EQ(j["results"][1]["doc_id"], "doc1");
  EXPECT_NE(j["results"][0]["text"].get<std::string>().find("(bm25)"), std::string::npos);

  r = post("/v1/search", json{{"question", "the tower"}, {"mode", "dense"}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  j = json::parse(r->body);
  EXPECT_EQ(j["results"].size(), 4u);
  EXPECT_NE(j["results"][0]["text"].get<std::string>().find("(dense)"), std::string::npos);

  EXPECT_NE(error_message(post("/v1/search", json{{"question", "q"}, {"mode", "hybrid"}}), 400)
                .find("bm25, dense"),
            std::string::npos);
  error_message(post("/v1/search", json{{"question", ""}}), 400);
  error_message(post("/v1/search", json{{"question", "q"}, {"top_k", 11}}), 400);
  EXPECT_EQ(service_.searches.load(), 2);
}

TEST_F(ServerTest, ServesThePageFromTheBinary) {
  auto r = client().Get("/?q=x&mode=none");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(r->body, web_page_html());
  for (const char* id :
       {"id=\"question\"", "name=\"mode\" value=\"context+prefix\"", "id=\"top-k\"",
        "id=\"answer\"", "id=\"evidence\"", "id=\"groundedness\"", "id=\"timings\"", "/v1/ask"}) {
    EXPECT_NE(r->body.find(id), std::string::npos) << id;
  }
  // Self-contained: nothing is loaded from elsewhere, and the policy says so.
  EXPECT_EQ(r->body.find("http://"), std::string::npos);
  EXPECT_EQ(r->body.find("https://"), std::string::npos);
  EXPECT_EQ(r->body.find("innerHTML"), std::string::npos) << "data must reach the page as text";
  EXPECT_NE(r->get_header_value("Content-Security-Policy").find("default-src 'none'"),
            std::string::npos);
}

TEST_F(ServerTest, ConcurrentClientsGetTheirOwnAnswers) {
  constexpr int kClients = 8, kRequests = 25;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      auto c = client();  // one keep-alive connection per client
      c.set_keep_alive(true);
      for (int i = 0; i < kRequests; ++i) {
        const std::string q = "question " + std::to_string(t) + "." + std::to_string(i);
        const bool search = i % 5 == 4;
        auto r = c.Post(search ? "/v1/search" : "/v1/ask",
                        json{{"question", q}, {"top_k", 1 + i % 3}}.dump(), "application/json");
        if (!r || r->status != 200) {
          ++errors;
          continue;
        }
        const json j = json::parse(r->body, nullptr, false);
        const auto& list = search ? j["results"] : j["evidence"];
        const bool ok = (search || j["answer"] == FakeService::answer_for(q)) &&
                        list.size() == static_cast<size_t>(1 + i % 3) &&
                        list[0]["text"].get<std::string>().find(FakeService::answer_for(q)) !=
                            std::string::npos;
        if (!ok) ++errors;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(service_.asks.load() + service_.searches.load(), kClients * kRequests);
}

TEST_F(ServerTest, RequestsAreAnsweredInParallel) {
  // Each of the two requests waits inside the service for the other: only a server that runs
  // them at the same time answers both with "met".
  std::string answers[2];
  std::thread peers[2];
  for (int i = 0; i < 2; ++i) {
    peers[i] = std::thread([&, i] {
      auto r = post("/v1/ask", json{{"question", "wait for a peer"}});
      answers[i] =
          r && r->status == 200 ? json::parse(r->body)["answer"].get<std::string>() : "error";
    });
  }
  for (auto& t : peers) t.join();
  EXPECT_EQ(answers[0], "met");
  EXPECT_EQ(answers[1], "met");
}

TEST(ServerLifecycle, PortInUseIsAnErrorAndStopIsPrompt) {
  FakeService service;
  ServerOptions o;
  o.http.port = 0;
  Server first(service, o);
  const int port = first.start();
  o.http.port = port;
  Server second(service, o);
  const std::string message = error_of([&] { second.bind(); });
  EXPECT_NE(message.find("127.0.0.1:" + std::to_string(port)), std::string::npos) << message;
  // stop() right after start() (the accept loop may not have begun) and twice.
  first.stop();
  first.stop();
  ServerOptions any_port;
  any_port.http.port = 0;
  Server third(service, any_port);
  third.start();
  third.stop();
  Server never_started(service, ServerOptions{});
  never_started.stop();
  o.http.port = 70000;
  EXPECT_NE(error_of([&] { Server(service, o).bind(); }).find("out of range"), std::string::npos);
  o.http.port = 0;
  o.http.workers = 0;
  EXPECT_NE(error_of([&] { Server(service, o); }).find("workers"), std::string::npos);
}

}  // namespace
}  // namespace kvrag::test
