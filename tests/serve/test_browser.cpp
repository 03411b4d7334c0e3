// The page in a real browser: Debian's headless Chromium loads "/?q=…&mode=…" from a running
// server (fake service), the page asks by itself, and the test reads the DOM Chromium dumps.
// Skipped where Chromium is absent ($KVRAG_CHROMIUM, else /usr/bin/chromium).

#include "browser.h"
#include "fake_service.h"
#include "serve/server.h"
#include "support/test_support.h"

namespace kvrag::test {
namespace {

class BrowserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_chromium()) {
      GTEST_SKIP()
          << "no Chromium at " << chromium_path()
          << " (apt-get install chromium, or set KVRAG_CHROMIUM): the browser test is skipped";
    }
    ServerOptions o;
    o.http.port = 0;
    server_ = std::make_unique<Server>(service_, o);
    server_->start();
  }
  void TearDown() override {
    if (server_) server_->stop();
  }

  FakeService service_;
  std::unique_ptr<Server> server_;
};

TEST_F(BrowserTest, AsksFromTheUrlAndShowsAnswerAndHighlightedEscapedEvidence) {
  const std::string dom =
      dump_dom(server_->url() + "?q=where%20is%20the%20tower%3F&mode=context&top_k=3");
  ASSERT_NE(dom.find("data-state=\"done\""), std::string::npos) << dom.substr(0, 4000);
  EXPECT_EQ(element(dom, "p", "answer"), "answer to where is the tower?");
  const std::string evidence = element(dom, "ol", "evidence");
  EXPECT_EQ(count(evidence, "<li class=\"evidence\">"), 3u) << evidence;
  // The answer is marked in each segment (without its trailing "?"), case-insensitively.
  EXPECT_EQ(count(evidence, "<mark>answer to where is the tower</mark>"), 3u) << evidence;
  // Markup in the corpus is text: escaped in the DOM, never elements, never run.
  EXPECT_EQ(count(evidence, "&lt;b&gt;says&lt;/b&gt;"), 3u) << evidence;
  EXPECT_EQ(count(evidence, "&lt;script&gt;window.pwned=1&lt;/script&gt;"), 3u) << evidence;
  EXPECT_EQ(evidence.find("<b>"), std::string::npos);
  EXPECT_EQ(evidence.find("<script"), std::string::npos);
  EXPECT_NE(element(dom, "div", "groundedness").find("answer in evidence yes"), std::string::npos);
  const std::string timings = element(dom, "div", "timings");
  EXPECT_NE(timings.find("total 4 ms"), std::string::npos) << timings;
  EXPECT_NE(timings.find("server"), std::string::npos) << timings;
  // The mode switch follows the URL; the models line comes from /v1/health.
  EXPECT_NE(dom.find("data-mode=\"context\""), std::string::npos);
  EXPECT_NE(element(dom, "p", "models").find("fake-llm"), std::string::npos);
  EXPECT_EQ(service_.asks.load(), 1);
}

TEST_F(BrowserTest, ClosedBookAndUnavailableModes) {
  std::string dom = dump_dom(server_->url() + "?q=who%20am%20i&mode=none");
  ASSERT_NE(dom.find("data-state=\"done\""), std::string::npos) << dom.substr(0, 4000);
  EXPECT_EQ(element(dom, "p", "answer"), "answer to who am i");
  EXPECT_EQ(count(element(dom, "ol", "evidence"), "<li"), 0u);
  EXPECT_NE(dom.find("No evidence (closed-book)"), std::string::npos);

  // The fake has no knowledge encoder: the page disables the prefix modes and shows the
  // server's reason when the URL asks for one anyway.
  dom = dump_dom(server_->url() + "?q=who%20am%20i&mode=prefix");
  ASSERT_NE(dom.find("data-state=\"error\""), std::string::npos) << dom.substr(0, 4000);
  EXPECT_NE(element(dom, "div", "status").find("not available here"), std::string::npos);
  EXPECT_NE(dom.find("value=\"context+prefix\" disabled"), std::string::npos);
}

TEST_F(BrowserTest, APageOpenedWithTheKeyInItsFragmentAsksWithIt) {
  server_->stop();
  ServerOptions o;
  o.http.port = 0;
  o.http.api_key = "page-key";
  server_ = std::make_unique<Server>(service_, o);
  server_->start();
  std::string dom = dump_dom(server_->url() + "?q=who%20am%20i&mode=context#key=page-key");
  ASSERT_NE(dom.find("data-state=\"done\""), std::string::npos) << dom.substr(0, 4000);
  EXPECT_EQ(element(dom, "p", "answer"), "answer to who am i");
  // Without it, the page says what to do.
  dom = dump_dom(server_->url() + "?q=who%20am%20i&mode=context");
  ASSERT_NE(dom.find("data-state=\"error\""), std::string::npos) << dom.substr(0, 4000);
  EXPECT_NE(element(dom, "div", "status").find("#key=KEY"), std::string::npos);
  EXPECT_EQ(service_.asks.load(), 1);
}

TEST_F(BrowserTest, TheFormStartsAtTheServersDefaults) {
  // A server whose defaults are context (the fake's first mode) and top_k 3 (as `kvrag serve`
  // sets them from the workspace): a link without mode and top_k asks with those.
  server_->stop();
  ServerOptions o;
  o.http.port = 0;
  o.default_top_k = 3;
  server_ = std::make_unique<Server>(service_, o);
  server_->start();
  const std::string dom = dump_dom(server_->url() + "?q=who%20am%20i");
  ASSERT_NE(dom.find("data-state=\"done\""), std::string::npos) << dom.substr(0, 4000);
  EXPECT_NE(dom.find("data-mode=\"context\""), std::string::npos) << dom.substr(0, 4000);
  EXPECT_EQ(count(element(dom, "ol", "evidence"), "<li class=\"evidence\">"), 3u);
  // The form shows them: the top-k box holds 3, the context radio is checked.
  const auto box = dom.find("id=\"top-k\"");
  ASSERT_NE(box, std::string::npos);
  EXPECT_NE(dom.substr(box, dom.find('>', box) - box).find("value=\"3\""), std::string::npos)
      << dom.substr(box, 200);
  EXPECT_NE(dom.find("value=\"context\" checked"), std::string::npos) << dom.substr(0, 4000);
}

}  // namespace
}  // namespace kvrag::test
