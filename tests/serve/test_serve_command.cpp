// `kvrag serve` as a user runs it: the binary started as a process, asked over HTTP and through
// the page in headless Chromium, stopped with SIGTERM. Over the real stories260K LLaMA
// (closed-book only: it has no index) from ../shared; skipped where that is absent.

#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "browser.h"
#include "support/cli_runner.h"
#include "support/test_support.h"

namespace kvrag::test {
namespace {

using json = nlohmann::json;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ServeCommand, MissingWorkspaceOrModelIsAClearError) {
  TempDir tmp;
  auto r = run_kvrag("serve --workspace " + (tmp / "nope"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "workspace " + (tmp / "nope") + " does not exist")) << r.err;
  r = run_kvrag("serve --workspace " + tmp.path());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "has no llm/ yet: run kvrag demo --workspace")) << r.err;
  r = run_kvrag("serve");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "give --workspace DIR or --llm DIR")) << r.err;
}

TEST(ServeCommand, ServesARealModelAndStopsOnSigterm) {
  KVRAG_SHARED_PATH_OR_SKIP(model, "models/stories260K");
  TempDir tmp;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = "exec " + std::string(KVRAG_CLI_PATH) + " --threads 1 serve --llm " +
                            model + " --port 0 --max-new-tokens 8 >" + (tmp / "out") + " 2>" +
                            (tmp / "err");
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // The URL line appears once the model is loaded and the port bound.
  std::smatch m;
  std::string out;
  for (int i = 0;
       i < 600 && !std::regex_search(out, m, std::regex(R"(open http://127\.0\.0\.1:(\d+)/)"));
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    out = slurp(tmp / "out");
  }
  ASSERT_FALSE(m.empty()) << "no URL printed; stderr: " << slurp(tmp / "err");
  EXPECT_TRUE(contains(out, "modes none;")) << out;
  const int port = std::stoi(m[1]);

  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60);
  auto r = c.Post("/v1/ask", json{{"question", "Once upon a time"}, {"mode", "none"}}.dump(),
                  "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  const std::string answer = j["answer"].get<std::string>();
  EXPECT_FALSE(answer.empty());  // stories260K continues any prompt
  EXPECT_TRUE(j["evidence"].empty());
  EXPECT_GT(j["timings_ms"]["generate"].get<double>(), 0.0);
  r = c.Post("/v1/ask", json{{"question", "q"}, {"mode", "context"}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);  // no index
  r = c.Get("/v1/health");
  ASSERT_TRUE(r);
  // The folder's name, not its path.
  EXPECT_EQ(json::parse(r->body)["models"]["llm"], "stories260K");
  EXPECT_FALSE(contains(r->body, model)) << r->body;
  if (have_chromium()) {
    // The page asks the same question and shows the same (greedy) answer.
    const std::string dom = dump_dom("http://127.0.0.1:" + std::to_string(port) +
                                     "/?q=Once%20upon%20a%20time&mode=none");
    EXPECT_NE(dom.find("data-state=\"done\""), std::string::npos) << dom.substr(0, 4000);
    EXPECT_EQ(element(dom, "p", "answer"), html_text(answer));
    // no index: closed-book only
    EXPECT_NE(dom.find("value=\"context\" disabled"), std::string::npos);
  }

  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "status " << status << "; " << slurp(tmp / "err");
  EXPECT_TRUE(contains(slurp(tmp / "err"), "terminated, finishing requests in flight"));
}

TEST(ServeCommand, TakesTheWorkspacesDefaults) {
  KVRAG_SHARED_PATH_OR_SKIP(model, "models/stories260K");
  // A workspace of the LLM alone whose record says top_k 3: /v1/health reports it as the default
  // (without the record it would be 5), and the mode it can serve (none) first.
  TempDir tmp;
  const std::string ws = tmp / "ws";
  std::filesystem::create_directories(ws);
  std::filesystem::create_directory_symlink(model, ws + "/llm");
  std::ofstream(ws + "/answer_defaults.json")
      << R"({"retriever": "hybrid", "mode": "prefix", "top_k": 3})";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = "exec " + std::string(KVRAG_CLI_PATH) +
                            " --threads 1 serve --workspace " + ws + " --port 0 >" + (tmp / "out") +
                            " 2>" + (tmp / "err");
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  std::smatch m;
  std::string out;
  for (int i = 0;
       i < 600 && !std::regex_search(out, m, std::regex(R"(open http://127\.0\.0\.1:(\d+)/)"));
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    out = slurp(tmp / "out");
  }
  if (!m.empty()) {
    httplib::Client c("127.0.0.1", std::stoi(m[1]));
    const auto r = c.Get("/v1/health");
    ASSERT_TRUE(r);
    const json health = json::parse(r->body);
    EXPECT_EQ(health["limits"]["default_top_k"], 3) << r->body;
    EXPECT_EQ(health["modes"], json({"none"})) << r->body;
  }
  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(m.empty()) << "no URL printed; stderr: " << slurp(tmp / "err");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << slurp(tmp / "err");
}

}  // namespace
}  // namespace kvrag::test
