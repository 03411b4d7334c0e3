// kvrag segment --corpus FILE [--format auto|jsonl|tsv] --tokenizer VOCAB_OR_TOKENIZER_JSON
//               --index DIR [--window 288] [--stride 64] [--no-title] [--strict] [--batch N]
//               [--overwrite] [--allow-empty]
// Cuts a corpus into token windows and writes DIR/segments.sqlite (segments + BM25 index).
// Progress goes to stderr; an interrupted run continues where it stopped when started again
// (index/segment_corpus.h). A corpus without documents is an error unless --allow-empty.

#include <fmt/format.h>

#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "core/units.h"
#include "index/segment_corpus.h"

namespace kvrag::cli {

void add_segment_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string corpus, format = "auto", tokenizer, index;
    int window = 288, stride = 64, batch = 1000;
    bool no_title = false, strict = false, overwrite = false, allow_empty = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "segment",
      "Cut a corpus (JSONL {\"id\",\"title\",\"text\"} or DPR TSV) into overlapping token windows "
      "and store them with a BM25 index in DIR/segments.sqlite; an interrupted run resumes");
  cmd->add_option("--corpus", args->corpus, "corpus file: .jsonl or DPR .tsv")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--format", args->format, "corpus format (auto: .tsv → TSV, else JSONL)")
      ->check(CLI::IsMember({"auto", "jsonl", "tsv"}))
      ->capture_default_str();
  cmd->add_option("--tokenizer", args->tokenizer,
                  "WordPiece vocab.txt or tokenizer.json (or a folder holding one) of the "
                  "retriever's encoder")
      ->required();
  cmd->add_option("--index", args->index, "index directory (created if missing)")->required();
  cmd->add_option("--window", args->window,
                  "tokens per segment as the encoder sees it: [CLS] title [SEP] text [SEP]")
      ->capture_default_str();
  cmd->add_option("--stride", args->stride, "tokens shared by consecutive windows")
      ->capture_default_str();
  cmd->add_flag("--no-title", args->no_title,
                "encode segments without their title (the title is still stored and indexed)");
  cmd->add_flag("--strict", args->strict,
                "stop at the first bad corpus line instead of skipping it");
  cmd->add_option("--batch", args->batch, "documents per transaction (resume granularity)")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_flag("--overwrite", args->overwrite, "delete an existing segment store and rebuild it");
  cmd->add_flag("--allow-empty", args->allow_empty,
                "accept a corpus without documents (an empty store) instead of failing");

  cmd->callback([args, &exit_code] {
    SegmentBuildOptions opt;
    opt.format = parse_corpus_format(args->format);
    opt.segmenter.window = args->window;
    opt.segmenter.stride = args->stride;
    opt.segmenter.prepend_title = !args->no_title;
    opt.strict = args->strict;
    opt.batch_documents = args->batch;
    opt.overwrite = args->overwrite;
    opt.allow_empty = args->allow_empty;
    const SegmentCorpusResult r = segment_corpus(args->corpus, args->tokenizer, args->index, opt);

    const std::string& store_path = r.store_path;
    const SegmentBuildResult& result = r.build;
    const CorpusStats& s = result.stats;
    if (result.up_to_date) {
      std::cout << fmt::format("{} is up to date: {} segments from {} documents\n", store_path,
                               format_count(result.segments), format_count(s.documents));
    } else {
      std::cout << fmt::format(
          "{}: {} segments from {} documents ({} lines){}\n", store_path,
          format_count(result.segments), format_count(s.documents), format_count(s.lines),
          result.resumed
              ? fmt::format(", resumed after line {}", format_count(result.resumed_at_line))
              : "");
    }
    if (s.bad_lines > 0) {
      std::cerr << fmt::format("segment: skipped {} bad line{} in {}{}\n",
                               format_count(s.bad_lines), s.bad_lines == 1 ? "" : "s", args->corpus,
                               s.bad_lines > static_cast<int64_t>(s.bad_examples.size())
                                   ? fmt::format(" (the first {}:)", s.bad_examples.size())
                                   : ":");
      for (const auto& [line, reason] : s.bad_examples) {
        std::cerr << fmt::format("  line {}: {}\n", line, reason);
      }
    }
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
