// An AnswerService without models, for testing the HTTP layer and the page: its answers are a
// function of the question, so a response that reached the wrong client shows.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "serve/server.h"

namespace kvrag::test {

class FakeService final : public AnswerService {
 public:
  static std::string answer_for(const std::string& question) { return "answer to " + question; }

  // "fail" throws an Error (→ 500), "too long" an input Error (→ 422); "wait for a peer" blocks
  // until a second such request is being answered at the same time (or 20 s pass) and answers "met"
  // or "alone"; "hold" blocks until release() (or 20 s pass).
  Answer ask(const std::string& question, AnswerMode mode, int top_k) override {
    ++asks;
    if (question == "fail") fail("fake model: out of cheese");
    KVRAG_CHECK_INPUT(question != "too long", "the question has 300 tokens, over the limit of 256");
    Answer a;
    if (question == "hold") {
      std::unique_lock<std::mutex> lock(mutex_);
      ++holding_;
      cv_.notify_all();
      cv_.wait_for(lock, std::chrono::seconds(20), [this] { return released_; });
      a.text = "held";
      return a;
    }
    if (question == "wait for a peer") {
      std::unique_lock<std::mutex> lock(mutex_);
      ++waiting_;
      cv_.notify_all();
      const bool met =
          cv_.wait_for(lock, std::chrono::seconds(20), [this] { return waiting_ >= 2; });
      a.text = met ? "met" : "alone";
      return a;
    }
    a.text = answer_for(question);
    if (mode != AnswerMode::kNone) a.evidence = evidence(question, top_k, to_string(mode));
    a.groundedness.answer_in_evidence = mode != AnswerMode::kNone;
    a.groundedness.logprob_with = -0.25;
    a.groundedness.logprob_without = -3.5;
    a.retrieve_ms = 1.5;
    a.generate_ms = 2.5;
    a.total_ms = 4;
    return a;
  }

  std::vector<Evidence> search(const std::string& question, int top_k,
                               const std::string& retriever_mode) override {
    ++searches;
    return evidence(question, top_k, retriever_mode);
  }

  std::vector<AnswerMode> modes() const override {
    return {AnswerMode::kContext, AnswerMode::kNone};
  }
  std::vector<std::string> retriever_modes() const override { return {"bm25", "dense"}; }
  nlohmann::json models() const override { return {{"llm", "fake-llm"}, {"index", "fake-index"}}; }

  // Segments with markup in title and text (data, which the page must show, not run) and the
  // answer in the text (which the page highlights).
  static std::vector<Evidence> evidence(const std::string& question, int top_k,
                                        const std::string& tag) {
    std::vector<Evidence> out;
    for (int i = 0; i < top_k; ++i) {
      Evidence e;
      e.segment_id = 100 + i;
      e.doc_id = "doc" + std::to_string(i);
      e.title = "Title " + std::to_string(i) + " <script>window.pwned=1</script>";
      e.text = "Segment " + std::to_string(i) + " (" + tag + ") <b>says</b> " +
               answer_for(question) + " & more.";
      e.score = 1.0 / (i + 1);
      out.push_back(e);
    }
    return out;
  }

  // Lets every "hold" request finish.
  void release() {
    std::lock_guard<std::mutex> lock(mutex_);
    released_ = true;
    cv_.notify_all();
  }
  // Waits until `n` "hold" requests are being answered.
  bool wait_holding(int n) {
    std::unique_lock<std::mutex> lock(mutex_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [&] { return holding_ >= n; });
  }

  std::atomic<int> asks{0}, searches{0};

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int waiting_ = 0, holding_ = 0;
  bool released_ = false;
};

}  // namespace kvrag::test
