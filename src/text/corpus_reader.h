// Streaming reader of document collections. Any size: one line in memory at a time.
//
// Formats:
//   JSONL  one object per line: {"id": 17 | "17", "title": "…", "text": "…"} (DPR / Pyserini
//          style). "id" may be a number or a string; "title" may be missing or null.
//   TSV    DPR's psgs_w100.tsv: a header line "id\ttext\ttitle", then one document per line.
//          The header's column names decide the column order (id, text and title must all be
//          there); without a header the order is id, text, title. A field may be wrapped in
//          double quotes with "" standing for one quote (Python csv style, as DPR writes its
//          text column); a quoted field may contain tabs but not line breaks.
// Both: UTF-8, "\n" or "\r\n" line ends, a UTF-8 byte-order mark on line 1 is skipped, blank
// lines are skipped silently.
//
// Bad lines (invalid JSON or UTF-8, a missing id, a missing or empty text, a wrong column count,
// an unterminated quote) are skipped, counted and the first kMaxBadExamples remembered with their
// line numbers; with `strict` the first one throws Error("corpus FILE: line N: reason").
//
// Empty corpora: a file that yields no document (empty, blank lines or a TSV header only, or
// nothing but bad lines) is an Error at its end, "corpus FILE: no documents (the file is
// empty); pass --allow-empty to accept", unless `allow_empty`.
//
// Resume: bytes_read() after a document is the offset of the next line, and resume_at() starts
// a fresh reader there (with the statistics of the lines before it), so a job that records
// (bytes_read(), stats()) with its output can continue after an interruption.
#pragma once

#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace kvrag {

struct Document {
  std::string id;
  std::string title;
  std::string text;
  int64_t line = 0;  // 1-based line number in the corpus file
};

enum class CorpusFormat { kAuto, kJsonl, kTsv };

// "auto" / "jsonl" / "tsv" (Error otherwise), and back.
CorpusFormat parse_corpus_format(const std::string& name);
const char* corpus_format_name(CorpusFormat format);

struct CorpusStats {
  static constexpr size_t kMaxBadExamples = 20;

  int64_t lines = 0;      // lines read (header and blank lines included)
  int64_t documents = 0;  // documents returned
  int64_t bad_lines = 0;
  // The first kMaxBadExamples bad lines: (line number, reason).
  std::vector<std::pair<int64_t, std::string>> bad_examples;
};

class CorpusReader {
 public:
  // kAuto: a name ending in ".tsv" → TSV, otherwise JSONL. Throws Error if the file cannot be
  // opened (or, for TSV, if its header names the wrong columns).
  CorpusReader(const std::string& path, CorpusFormat format = CorpusFormat::kAuto,
               bool strict = false, bool allow_empty = false);
  ~CorpusReader();
  CorpusReader(const CorpusReader&) = delete;
  CorpusReader& operator=(const CorpusReader&) = delete;

  // Next good document; false at the end of the file. Throws Error on a read error, on a bad
  // line when strict, and at the end of a file without documents unless allow_empty.
  bool next(Document& doc);

  // Continues at byte `offset` (a value of bytes_read() from an earlier reader of the same
  // file, i.e. the start of a line), with `stats` as the statistics of everything before it.
  // Throws Error if the offset lies outside the file.
  void resume_at(int64_t offset, CorpusStats stats);

  const CorpusStats& stats() const { return stats_; }
  const std::string& path() const { return path_; }
  CorpusFormat format() const { return format_; }  // kJsonl or kTsv, never kAuto
  // Bytes consumed so far (the offset of the next line) and the file size, for progress.
  int64_t bytes_read() const { return bytes_read_; }
  int64_t file_size() const { return file_size_; }

 private:
  bool read_line();  // next raw line into line_ (without its "\n" / "\r\n"); false at EOF
  void bad_line(const std::string& reason);
  [[noreturn]] void fail_empty() const;
  bool parse_jsonl(Document& doc);
  bool parse_tsv(Document& doc);
  void read_tsv_header();

  std::string path_;
  CorpusFormat format_;
  bool strict_;
  bool allow_empty_;
  std::unique_ptr<char[]> buffer_;  // the ifstream's read buffer (large, for throughput)
  std::ifstream in_;
  std::string line_;
  std::vector<std::string> fields_;  // TSV fields of the current line
  int col_id_ = 0, col_text_ = 1, col_title_ = 2, n_cols_ = 3;
  int64_t header_end_ = 0;  // TSV: offset after the header line (0 if there is none)
  CorpusStats stats_;
  int64_t bytes_read_ = 0, file_size_ = 0;
};

}  // namespace kvrag
