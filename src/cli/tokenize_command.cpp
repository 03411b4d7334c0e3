// kvrag tokenize --tokenizer PATH --jsonl [--no-special]
// Reads {"text": …} lines on stdin, writes {"ids": […]} lines.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "text/tokenizer.h"

namespace kvrag::cli {

void add_tokenize_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string tokenizer;
    bool jsonl = false, no_special = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd =
      app.add_subcommand("tokenize",
                         "Tokenize {\"text\": …} JSON lines from stdin into {\"ids\": […]} lines: "
                         "with BOS for a SentencePiece model, with [CLS] … [SEP] for WordPiece");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "tokenizer.model (SentencePiece), vocab.txt or tokenizer.json (WordPiece), or a "
                  "folder holding one")
      ->required();
  cmd->add_flag("--jsonl", args->jsonl, "JSON lines in and out (the only format)")->required();
  cmd->add_flag("--no-special", args->no_special, "leave out BOS / [CLS] / [SEP]");
  cmd->callback([args, &exit_code] {
    const auto tokenizer = load_tokenizer(args->tokenizer);
    std::ios::sync_with_stdio(false);
    std::string line, out;
    size_t line_no = 0;
    while (std::getline(std::cin, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank line
      std::string text;
      try {
        const auto j = nlohmann::json::parse(line);
        KVRAG_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(),
                    "expected an object with a string \"text\"");
        text = j["text"].get<std::string>();
        const auto ids = tokenizer->encode(text, !args->no_special);
        out += fmt::format("{{\"ids\": [{}]}}\n", fmt::join(ids, ", "));
      } catch (const nlohmann::json::exception& e) {
        fail("stdin line {}: invalid JSON: {}", line_no, e.what());
      } catch (Error& e) {
        throw e.with_context(fmt::format("stdin line {}", line_no));
      }
      if (out.size() > (1 << 16)) {
        std::cout << out;
        out.clear();
      }
    }
    std::cout << out << std::flush;
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
