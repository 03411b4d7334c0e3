// kvrag segment --corpus FILE [--format auto|jsonl|tsv] --tokenizer VOCAB_OR_TOKENIZER_JSON
//               --index DIR [--window 288] [--stride 64] [--no-title] [--strict] [--batch N]
//               [--overwrite]
// Cuts a corpus into token windows and writes DIR/segments.sqlite (segments + BM25 index).
// Progress goes to stderr; an interrupted run continues where it stopped when started again.

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "index/segment_store.h"
#include "text/tokenizer.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag::cli {
namespace {

namespace fs = std::filesystem;

// The file a --tokenizer argument names: itself, or tokenizer.json / vocab.txt in a folder.
std::string tokenizer_file(const std::string& path) {
  if (!fs::is_directory(path)) return path;
  for (const char* name : {"tokenizer.json", "vocab.txt"}) {
    if (fs::exists(fs::path(path) / name)) return (fs::path(path) / name).string();
  }
  fail("tokenizer: no tokenizer.json or vocab.txt in {}", path);
}

// Identifies a tokenizer by file name and content (FNV-1a 64), so the fingerprint survives a
// moved file but not a changed vocabulary.
std::string tokenizer_id(const std::string& file) {
  const std::string bytes = read_file(file);
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return fmt::format("{}#fnv1a64:{:016x}", fs::path(file).filename().string(), h);
}

}  // namespace

void add_segment_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string corpus, format = "auto", tokenizer, index;
    int window = 288, stride = 64, batch = 1000;
    bool no_title = false, strict = false, overwrite = false;
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
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--overwrite", args->overwrite, "delete an existing segment store and rebuild it");

  cmd->callback([args, &exit_code] {
    const std::string file = tokenizer_file(args->tokenizer);
    std::unique_ptr<Tokenizer> loaded = load_tokenizer(file);
    auto* wordpiece = dynamic_cast<WordPieceTokenizer*>(loaded.get());
    KVRAG_CHECK(wordpiece != nullptr,
                "tokenizer {}: segmenting needs the retriever's WordPiece tokenizer (vocab.txt or "
                "tokenizer.json)",
                file);

    SegmentBuildOptions opt;
    opt.format = parse_corpus_format(args->format);
    opt.segmenter.window = args->window;
    opt.segmenter.stride = args->stride;
    opt.segmenter.prepend_title = !args->no_title;
    opt.tokenizer_id = tokenizer_id(file);
    opt.strict = args->strict;
    opt.batch_documents = args->batch;
    opt.overwrite = args->overwrite;
    validate(opt.segmenter);

    const std::string store_path = (fs::path(args->index) / "segments.sqlite").string();
    std::unique_ptr<ProgressReporter> progress;
    const auto result = build_segment_store(
        store_path, args->corpus, *wordpiece, opt, [&](const SegmentBuildProgress& p) {
          if (!progress) {
            if (p.resumed) {
              std::cerr << fmt::format("segment: resuming {} at byte {} ({} documents done)\n",
                                       store_path, format_count(p.start_bytes),
                                       format_count(p.start_documents));
            }
            ProgressOptions po;
            po.label = "segment";
            po.unit = "documents";
            po.total_bytes = p.bytes_total;
            po.start_bytes = p.start_bytes;
            po.start_items = p.start_documents;
            progress = std::make_unique<ProgressReporter>(po);
          }
          if (std::string(p.phase) == "optimizing") {
            progress->finish(p.bytes_done, p.documents);
            std::cerr << "segment: optimizing the full-text index…\n";
          } else {
            progress->update(p.bytes_done, p.documents);
          }
        });
    progress.reset();

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
