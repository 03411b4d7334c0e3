// Streaming reader of document collections: JSONL {"id","title","text"} (DPR/Pyserini style)
// and DPR's TSV (id \t text \t title, with a header line). Any size: one line in memory at a time.
//
// Bad lines (invalid JSON or UTF-8, a missing or empty text, wrong column count) are counted
// and remembered with their line numbers; with `strict` the first one throws Error instead.
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

struct CorpusStats {
  int64_t lines = 0;      // lines read (header and blank lines included)
  int64_t documents = 0;  // documents returned
  int64_t bad_lines = 0;
  // The first few bad lines: (line number, reason).
  std::vector<std::pair<int64_t, std::string>> bad_examples;
};

class CorpusReader {
 public:
  // kAuto: ".tsv" → TSV, otherwise JSONL. Throws Error if the file cannot be opened.
  CorpusReader(const std::string& path, CorpusFormat format = CorpusFormat::kAuto, bool strict = false);
  ~CorpusReader();

  // Next good document; false at the end of the file.
  bool next(Document& doc);

  const CorpusStats& stats() const { return stats_; }
  const std::string& path() const { return path_; }
  // Bytes consumed so far and the file size, for progress.
  int64_t bytes_read() const { return bytes_read_; }
  int64_t file_size() const { return file_size_; }

 private:
  void bad_line(const std::string& reason);

  std::string path_;
  CorpusFormat format_;
  bool strict_;
  std::ifstream in_;
  std::string line_;
  CorpusStats stats_;
  int64_t bytes_read_ = 0, file_size_ = 0;
};

}  // namespace kvrag
