// kvrag search --index DIR [--mode dense|bm25|hybrid] [-k K] "question"
// kvrag search --index DIR --jsonl < questions.jsonl      ({"question"} lines → result lines)

#include <fmt/format.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/retriever_options.h"
#include "core/error.h"

namespace kvrag::cli {
namespace {

constexpr int kMaxK = 10000;
constexpr size_t kMaxQuestionBytes = 8192;

nlohmann::json results_json(const std::vector<Evidence>& evidence) {
  auto out = nlohmann::json::array();
  for (const auto& e : evidence) {
    out.push_back({{"segment_id", e.segment_id},
                   {"doc_id", e.doc_id},
                   {"title", e.title},
                   {"score", e.score},
                   {"text", e.text}});
  }
  return out;
}

void check_question(const std::string& q, const std::string& where) {
  KVRAG_CHECK(!q.empty(), "{}: empty question", where);
  KVRAG_CHECK(q.size() <= kMaxQuestionBytes, "{}: question of {} bytes exceeds the limit of {}",
              where, q.size(), kMaxQuestionBytes);
}

}  // namespace

void add_search_command(CLI::App& app, int& exit_code) {
  struct Args {
    RetrieverOptions retriever;
    std::string question;
    int k = 5, batch = 64;
    bool jsonl = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("search", "Top-k segments for a question (dense, BM25 or hybrid)");
  args->retriever.add_to(cmd);
  cmd->add_option("question", args->question, "the question (omit with --jsonl)");
  cmd->add_option("-k", args->k, "segments to return")->check(CLI::Range(1, kMaxK));
  cmd->add_flag("--jsonl", args->jsonl,
                "read {\"question\"} lines on stdin, write {\"question\", \"results\": "
                "[{segment_id, doc_id, title, score, text}]} lines");
  cmd->add_option("--batch", args->batch, "questions encoded together in --jsonl mode")
      ->check(kPositive);
  cmd->callback([args, &exit_code] {
    KVRAG_CHECK(args->jsonl != !args->question.empty(), "give either a question or --jsonl");
    const auto retriever = open_retriever(args->retriever.index, args->retriever.spec);
    if (!args->jsonl) {
      check_question(args->question, "question");
      const auto results = results_json(retriever->search({args->question}, args->k).at(0));
      for (size_t i = 0; i < results.size(); ++i) {
        const auto& r = results[i];
        std::string text = r["text"].get<std::string>();
        if (text.size() > 300) text = text.substr(0, 300) + "…";
        fmt::print("{:>3}. [{}] {} (doc {}, score {:.4f})\n     {}\n", i + 1,
                   r["segment_id"].get<int64_t>(), r["title"].get<std::string>(),
                   r["doc_id"].get<std::string>(), r["score"].get<double>(), text);
      }
      if (results.empty()) fmt::print("no results\n");
      exit_code = 0;
      return;
    }
    // Batch mode: questions are gathered `batch` at a time.
    std::vector<std::string> batch;
    auto flush = [&] {
      if (batch.empty()) return;
      const auto evidence = retriever->search(batch, args->k);
      for (size_t i = 0; i < batch.size(); ++i) {
        nlohmann::json line{{"question", batch[i]}, {"results", results_json(evidence[i])}};
        std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      }
      batch.clear();
    };
    std::string line;
    for (int64_t line_no = 1; std::getline(std::cin, line); ++line_no) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const std::string where = fmt::format("stdin line {}", line_no);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        fail("{}: invalid JSON: {}", where, e.what());
      }
      KVRAG_CHECK(j.is_object() && j.contains("question") && j["question"].is_string(),
                  "{}: expected an object with a string \"question\"", where);
      batch.push_back(j["question"].get<std::string>());
      check_question(batch.back(), where);
      if (static_cast<int>(batch.size()) == args->batch) flush();
    }
    flush();
    std::cout << std::flush;
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
