// The server under careless and hostile clients: request framing and body limits, who may ask
// (Host, API key, Content-Type), slow clients that hold connections, a full queue.

#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "fake_service.h"
#include "raw_http.h"
#include "serve/server.h"
#include "support/test_support.h"

namespace kvrag::test {
namespace {

using json = nlohmann::json;

const std::string kQuestion = R"({"question": "who built the tower?"})";

// A raw POST /v1/ask with `headers` (each ending in \r\n) and `body`.
std::string post_ask(const std::string& headers, const std::string& body = "") {
  return "POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + "\r\n" + body;
}

std::string json_headers(size_t length) {
  return "Content-Type: application/json\r\nContent-Length: " + std::to_string(length) + "\r\n";
}

class ServerLimitsTest : public ::testing::Test {
 protected:
  void start(ServerOptions o = {}) {
    o.http.port = 0;
    o.http.max_body_bytes = 4096;
    server_ = std::make_unique<Server>(service_, o);
    port_ = server_->start();
  }
  void TearDown() override {
    service_.release();
    if (server_) server_->stop();
  }

  // Sends `request` on a new connection and returns the response.
  std::string exchange(const std::string& request, double timeout_s = 10) {
    RawConnection c(port_);
    EXPECT_TRUE(c.connected());
    c.send(request);
    return c.read_response(timeout_s);
  }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30);
    return c;
  }

  FakeService service_;
  std::unique_ptr<Server> server_;
  int port_ = 0;
};

TEST_F(ServerLimitsTest, AWellFormedRawRequestIsAnswered) {
  start();
  const std::string r = exchange(post_ask(json_headers(kQuestion.size()), kQuestion));
  EXPECT_EQ(status_of(r), 200) << r;
  EXPECT_NE(r.find("answer to who built the tower?"), std::string::npos) << r;
}

TEST_F(ServerLimitsTest, BodiesWithoutALengthAreRefusedBeforeBeingRead) {
  start();
  // Chunked: refused with 411 before a byte of the (here endless) body is read, whatever its size.
  RawConnection chunked(port_);
  chunked.send(post_ask("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
                        "100000\r\n" + std::string(4096, 'x')));
  std::string r = chunked.read_response();
  EXPECT_EQ(status_of(r), 411) << r;
  EXPECT_NE(r.find("Content-Length"), std::string::npos) << r;
  EXPECT_TRUE(chunked.closed_by_server(5)) << "the rest of the body is not read";
  // No Content-Length at all: 411 at once, not after a timeout.
  r = exchange(post_ask("Content-Type: application/json\r\n", kQuestion), 3);
  EXPECT_EQ(status_of(r), 411) << r;
  // Lengths that disagree, or a length with a transfer coding: 400 (request smuggling).
  r = exchange(post_ask(json_headers(kQuestion.size()) + "Content-Length: 5\r\n", kQuestion));
  EXPECT_EQ(status_of(r), 400) << r;
  r = exchange(
      post_ask(json_headers(kQuestion.size()) + "Transfer-Encoding: chunked\r\n", kQuestion));
  EXPECT_EQ(status_of(r), 400) << r;
  EXPECT_EQ(service_.asks.load(), 0);
}

TEST_F(ServerLimitsTest, AnOversizedLengthGets413WithoutSendingTheBody) {
  start();
  RawConnection c(port_);
  c.send(post_ask(json_headers(200u << 20)));  // announces 200 MB, sends none of it
  const std::string r = c.read_response(5);
  EXPECT_EQ(status_of(r), 413) << r;
  EXPECT_NE(r.find("4096"), std::string::npos) << r;
  // A body that is longer than its Content-Length says is cut at the length: the rest is the next
  // request, which is not HTTP.
  EXPECT_EQ(service_.asks.load(), 0);
}

TEST_F(ServerLimitsTest, OnlyJsonBodiesAreAccepted) {
  start();
  // What a cross-site form or a fetch without preflight can send.
  for (const char* type :
       {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"}) {
    auto r = client().Post("/v1/ask", kQuestion, type);
    ASSERT_TRUE(r) << type;
    EXPECT_EQ(r->status, 415) << type;
    EXPECT_NE(r->body.find("application/json"), std::string::npos) << r->body;
  }
  const std::string r =
      exchange(post_ask("Content-Length: " + std::to_string(kQuestion.size()) + "\r\n", kQuestion));
  EXPECT_EQ(status_of(r), 415) << r;
  auto ok = client().Post("/v1/ask", kQuestion, "Application/JSON; charset=utf-8");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
  EXPECT_EQ(service_.asks.load(), 1);
}

TEST_F(ServerLimitsTest, ForeignHostHeadersAreRefused) {
  ServerOptions o;
  o.http.allowed_hosts = {"kvrag.lab.example"};
  start(o);
  const auto with_host = [&](const std::string& host) {
    return status_of(exchange("POST /v1/ask HTTP/1.1\r\nHost: " + host + "\r\n" +
                              json_headers(kQuestion.size()) + "\r\n" + kQuestion));
  };
  // A page elsewhere whose name was rebound to 127.0.0.1 sends its own name.
  EXPECT_EQ(with_host("attacker.example"), 403);
  EXPECT_EQ(with_host("attacker.example:" + std::to_string(port_)), 403);
  for (const std::string h : {"127.0.0.1:" + std::to_string(port_), std::string("localhost"),
                              "LOCALHOST:" + std::to_string(port_), std::string("[::1]:80"),
                              std::string("kvrag.lab.example:8080")}) {
    EXPECT_EQ(with_host(h), 200) << h;
  }
  const std::string r = exchange("GET /v1/health HTTP/1.1\r\nHost: evil.example\r\n\r\n");
  EXPECT_EQ(status_of(r), 403) << r;
  EXPECT_NE(r.find("--allowed-host"), std::string::npos) << r;
}

TEST_F(ServerLimitsTest, AnApiKeyIsRequiredOnceSet) {
  ServerOptions o;
  o.http.api_key = "s3cret-key";
  start(o);
  auto c = client();
  auto r = c.Get("/v1/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
  for (const char* wrong : {"s3cret-kex", "s3cret-key2", "s3cret", ""}) {
    c.set_bearer_token_auth(wrong);
    r = c.Post("/v1/ask", kQuestion, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << wrong;
  }
  c.set_bearer_token_auth("s3cret-key");
  r = c.Post("/v1/ask", kQuestion, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  // With a key, the key decides, not the Host header (the server may be reached by any name).
  const std::string raw = exchange(
      "GET /v1/health HTTP/1.1\r\nHost: gpu-box.example\r\nAuthorization: Bearer "
      "s3cret-key\r\n\r\n");
  EXPECT_EQ(status_of(raw), 200) << raw;
  // The page itself holds no data and loads without the key (it asks for one: URL#key=KEY).
  EXPECT_EQ(status_of(exchange("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")), 200);
  EXPECT_EQ(service_.asks.load(), 1);
}

TEST_F(ServerLimitsTest, ANonLoopbackAddressNeedsAKeyOrInsecure) {
  ServerOptions o;
  o.http.host = "0.0.0.0";
  o.http.port = 0;
  const std::string message = error_of([&] { Server(service_, o); });
  EXPECT_NE(message.find("--api-key"), std::string::npos) << message;
  EXPECT_NE(message.find("--insecure"), std::string::npos) << message;
  o.http.insecure = true;
  Server open(service_, o);
  EXPECT_GT(open.start(), 0);
  open.stop();
  o.http.insecure = false;
  o.http.api_key = "k";
  Server keyed(service_, o);
  EXPECT_GT(keyed.start(), 0);
  keyed.stop();
}

TEST_F(ServerLimitsTest, SlowClientsHoldNoWorkerAndAreClosedWhenIdle) {
  ServerOptions o;
  o.http.workers = 2;
  o.http.idle_timeout_s = 1;
  start(o);
  // 32 slow clients: half stop inside their headers, half inside their body.
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < 32; ++i) {
    slow.push_back(std::make_unique<RawConnection>(port_));
    ASSERT_TRUE(slow.back()->connected());
    slow.back()->send(i % 2 == 0 ? "POST /v1/ask HTTP/1.1\r\nHost: x\r\n"
                                 : post_ask(json_headers(kQuestion.size()), "{\"quest"));
  }
  // Everyone else is served meanwhile, with only two workers.
  auto c = client();
  for (int i = 0; i < 5; ++i) {
    auto h = c.Get("/v1/health");
    ASSERT_TRUE(h);
    EXPECT_EQ(h->status, 200);
    auto r = c.Post("/v1/ask", kQuestion, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  // Once idle for longer than the timeout, each slow connection is closed by the server.
  for (auto& s : slow) EXPECT_TRUE(s->closed_by_server(10));
  EXPECT_EQ(service_.asks.load(), 5);
}

TEST_F(ServerLimitsTest, AClientThatTricklesItsHeadersIsCutOffAtTheRequestDeadline) {
  ServerOptions o;
  o.http.idle_timeout_s = 5;
  o.http.request_timeout_s = 1;
  start(o);
  RawConnection trickle(port_);
  ASSERT_TRUE(trickle.send("POST /v1/ask HTTP/1.1\r\nHost: 127.0.0.1\r\n"));
  // A header line every 200 ms: never idle, but the request is never whole either.
  bool cut = false;
  for (int i = 0; i < 50 && !cut; ++i) {
    cut = !trickle.send("X-Trickle: " + std::to_string(i) + "\r\n") ||
          trickle.closed_by_server(0.2);
  }
  EXPECT_TRUE(cut) << "still connected after 10 s";
  // A kept-alive connection is held to the deadline again for its next request, after an answer.
  RawConnection kept(port_);
  kept.send(post_ask(json_headers(kQuestion.size()), kQuestion));
  EXPECT_EQ(status_of(kept.read_response()), 200);
  EXPECT_TRUE(kept.closed_by_server(10));
}

TEST_F(ServerLimitsTest, AFullQueueGets503AndTheOthersFinish) {
  ServerOptions o;
  o.http.workers = 1;
  o.http.max_queue = 1;
  start(o);
  const std::string hold = R"({"question": "hold"})";
  std::vector<std::thread> held;
  std::vector<int> held_status(2, 0);
  for (int i = 0; i < 2; ++i) {
    held.emplace_back([&, i] {
      auto r = client().Post("/v1/ask", hold, "application/json");
      held_status[i] = r ? r->status : -1;
    });
    if (i == 0) ASSERT_TRUE(service_.wait_holding(1));  // the worker is busy; the next one waits
  }
  // The second waits in the queue (we cannot see it there: give it a moment to arrive).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto r = client().Post("/v1/ask", kQuestion, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  // Health is answered on the event loop, not by the busy worker.
  auto h = client().Get("/v1/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  service_.release();
  for (auto& t : held) t.join();
  EXPECT_EQ(held_status[0], 200);
  EXPECT_EQ(held_status[1], 200);
}

TEST_F(ServerLimitsTest, FieldValuesAreTakenAsSentNotWrappedOrDefaulted) {
  start();
  auto c = client();
  auto r =
      c.Post("/v1/ask", R"({"question": "q", "top_k": 9223372036854775808})", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("9223372036854775808 is out of range"), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("-9223372036854775808"), std::string::npos) << r->body;
  for (const char* field : {"top_k", "mode"}) {
    r = c.Post("/v1/ask", json{{"question", "q"}, {field, nullptr}}.dump(), "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << field;
    EXPECT_NE(r->body.find("is null"), std::string::npos) << r->body;
  }
  EXPECT_EQ(service_.asks.load(), 0);
}

TEST_F(ServerLimitsTest, StoppingFinishesTheRequestsInFlight) {
  start();
  int status = 0;
  std::thread asker([&] {
    auto r = client().Post("/v1/ask", R"({"question": "hold"})", "application/json");
    status = r ? r->status : -1;
  });
  ASSERT_TRUE(service_.wait_holding(1));
  std::thread stopper([&] { server_->stop(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  service_.release();
  stopper.join();
  asker.join();
  EXPECT_EQ(status, 200);
}

}  // namespace
}  // namespace kvrag::test
