// kvrag tokenize --tokenizer PATH --jsonl [--no-special]
// Reads {"text": …} lines on stdin, writes {"ids": […]} lines, each as soon as its line is read
// (text/tokenize_jsonl.h); a bad line stops with "stdin: line N: problem" after the output of
// the lines before it.

#include <iostream>

#include "cli/commands.h"
#include "text/tokenize_jsonl.h"
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
    tokenize_jsonl(*tokenizer, std::cin, std::cout, "stdin", !args->no_special);
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
