// Streaming JSONL / DPR-TSV corpus reader (see corpus_reader.h).
#include "text/corpus_reader.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/error.h"
#include "text/utf8.h"

namespace kvrag {
namespace {

constexpr size_t kReadBuffer = size_t{1} << 20;  // 1 MiB: large sequential reads

bool ends_with(const std::string& s, const char* suffix) {
  const size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n\f\v") == std::string_view::npos;
}

// The short part of an nlohmann exception message: "[json.exception.parse_error.101] parse
// error at line 1, column 9: syntax error …" → "parse error at line 1, column 9: …".
std::string json_reason(const char* what) {
  std::string s(what);
  if (s.rfind("[json.exception.", 0) == 0) {
    const size_t close = s.find("] ");
    if (close != std::string::npos) s.erase(0, close + 2);
  }
  return s;
}

// Splits one TSV line into `fields`, Python-csv style: a field that starts with '"' runs to the
// matching unescaped quote ("" inside stands for one quote) and may contain tabs; anything
// after its closing quote up to the next tab is appended as is. Returns false if a quoted field
// is not closed on this line.
bool split_tsv(std::string_view line, std::vector<std::string>& fields) {
  fields.clear();
  size_t i = 0;
  const size_t n = line.size();
  for (;;) {
    std::string& field = fields.emplace_back();
    if (i < n && line[i] == '"') {
      size_t j = i + 1;
      bool closed = false;
      while (j < n) {
        if (line[j] == '"') {
          if (j + 1 < n && line[j + 1] == '"') {
            field += '"';
            j += 2;
          } else {
            ++j;
            closed = true;
            break;
          }
        } else {
          field += line[j++];
        }
      }
      if (!closed) return false;
      i = j;
    }
    const size_t tab = line.find('\t', i);
    const size_t end = tab == std::string_view::npos ? n : tab;
    field.append(line.substr(i, end - i));
    if (tab == std::string_view::npos) return true;
    i = tab + 1;
  }
}

}  // namespace

CorpusFormat parse_corpus_format(const std::string& name) {
  if (name == "auto") return CorpusFormat::kAuto;
  if (name == "jsonl") return CorpusFormat::kJsonl;
  if (name == "tsv") return CorpusFormat::kTsv;
  fail("unknown corpus format '{}' (expected auto, jsonl or tsv)", name);
}

const char* corpus_format_name(CorpusFormat format) {
  switch (format) {
    case CorpusFormat::kJsonl:
      return "jsonl";
    case CorpusFormat::kTsv:
      return "tsv";
    default:
      return "auto";
  }
}

CorpusReader::CorpusReader(const std::string& path, CorpusFormat format, bool strict,
                           bool allow_empty)
    : path_(path),
      format_(format),
      strict_(strict),
      allow_empty_(allow_empty),
      buffer_(new char[kReadBuffer]) {
  if (format_ == CorpusFormat::kAuto) {
    format_ = ends_with(path, ".tsv") ? CorpusFormat::kTsv : CorpusFormat::kJsonl;
  }
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail("corpus {}: is a directory", path);
  in_.rdbuf()->pubsetbuf(buffer_.get(), kReadBuffer);  // before open(), or it has no effect
  in_.open(path, std::ios::binary);
  if (!in_) fail("corpus {}: cannot open: {}", path, std::strerror(errno));
  const auto size = std::filesystem::file_size(path, ec);
  file_size_ = ec ? 0 : static_cast<int64_t>(size);
  if (format_ == CorpusFormat::kTsv) read_tsv_header();
}

CorpusReader::~CorpusReader() = default;

void CorpusReader::read_tsv_header() {
  header_end_ = 0;
  if (!read_line()) return;  // empty file
  if (!split_tsv(line_, fields_) || fields_.empty() || fields_[0] != "id") {
    // No header: the default order id, text, title. Read this line again as data.
    in_.clear();
    in_.seekg(0);
    bytes_read_ = 0;
    --stats_.lines;
    return;
  }
  col_id_ = col_text_ = col_title_ = -1;
  for (size_t c = 0; c < fields_.size(); ++c) {
    if (fields_[c] == "id") col_id_ = static_cast<int>(c);
    if (fields_[c] == "text") col_text_ = static_cast<int>(c);
    if (fields_[c] == "title") col_title_ = static_cast<int>(c);
  }
  if (col_text_ < 0 || col_title_ < 0) {
    fail(
        "corpus {}: line 1: TSV header must name the columns id, text and title (DPR psgs_w100.tsv "
        "style), got '{}'",
        path_, line_);
  }
  n_cols_ = static_cast<int>(fields_.size());
  header_end_ = bytes_read_;
}

void CorpusReader::resume_at(int64_t offset, CorpusStats stats) {
  KVRAG_CHECK(offset >= 0 && (file_size_ == 0 || offset <= file_size_),
              "corpus {}: cannot resume at byte {}: the file has {} bytes (has it changed?)", path_,
              offset, file_size_);
  in_.clear();
  stats_ = std::move(stats);
  if (offset == 0) {
    in_.seekg(0);
    bytes_read_ = 0;
    if (format_ == CorpusFormat::kTsv) read_tsv_header();
    return;
  }
  KVRAG_CHECK(offset >= header_end_, "corpus {}: cannot resume at byte {}: inside the header",
              path_, offset);
  in_.seekg(offset);
  if (!in_) fail("corpus {}: cannot seek to byte {}", path_, offset);
  bytes_read_ = offset;
}

bool CorpusReader::read_line() {
  if (!std::getline(in_, line_)) {
    if (in_.bad())
      fail("corpus {}: read error after line {}: {}", path_, stats_.lines, std::strerror(errno));
    return false;
  }
  // getline consumed a '\n' unless it stopped at the end of the file.
  bytes_read_ += static_cast<int64_t>(line_.size()) + (in_.eof() ? 0 : 1);
  ++stats_.lines;
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  if (stats_.lines == 1 && line_.compare(0, 3, "\xEF\xBB\xBF") == 0) line_.erase(0, 3);
  return true;
}

void CorpusReader::bad_line(const std::string& reason) {
  if (strict_) fail("corpus {}: line {}: {}", path_, stats_.lines, reason);
  ++stats_.bad_lines;
  if (stats_.bad_examples.size() < CorpusStats::kMaxBadExamples) {
    stats_.bad_examples.emplace_back(stats_.lines, reason);
  }
}

bool CorpusReader::parse_jsonl(Document& doc) {
  using nlohmann::json;
  json j;
  try {
    j = json::parse(line_);
  } catch (const json::exception& e) {
    bad_line("invalid JSON: " + json_reason(e.what()));
    return false;
  }
  if (!j.is_object()) {
    bad_line("not a JSON object");
    return false;
  }
  // id: a string, or a number written the way JSON writes it (17, not 17.0).
  auto id = j.find("id");
  if (id == j.end() || id->is_null()) {
    bad_line("missing \"id\"");
    return false;
  }
  if (id->is_string()) {
    doc.id = id->get<std::string>();
  } else if (id->is_number()) {
    doc.id = id->dump();
  } else {
    bad_line("\"id\" is neither a string nor a number");
    return false;
  }
  if (doc.id.empty()) {
    bad_line("empty \"id\"");
    return false;
  }
  auto title = j.find("title");
  if (title == j.end() || title->is_null()) {
    doc.title.clear();
  } else if (title->is_string()) {
    doc.title = title->get<std::string>();
  } else {
    bad_line("\"title\" is not a string");
    return false;
  }
  auto text = j.find("text");
  if (text == j.end() || text->is_null()) {
    bad_line("missing \"text\"");
    return false;
  }
  if (!text->is_string()) {
    bad_line("\"text\" is not a string");
    return false;
  }
  doc.text = text->get<std::string>();
  if (is_blank(doc.text)) {
    bad_line("empty \"text\"");
    return false;
  }
  return true;
}

bool CorpusReader::parse_tsv(Document& doc) {
  if (!split_tsv(line_, fields_)) {
    bad_line("unterminated quoted field");
    return false;
  }
  if (static_cast<int>(fields_.size()) != n_cols_) {
    bad_line(fmt::format("expected {} tab-separated columns, got {}", n_cols_, fields_.size()));
    return false;
  }
  doc.id = std::move(fields_[col_id_]);
  doc.text = std::move(fields_[col_text_]);
  doc.title = std::move(fields_[col_title_]);
  if (doc.id.empty()) {
    bad_line("empty id");
    return false;
  }
  if (is_blank(doc.text)) {
    bad_line("empty text");
    return false;
  }
  return true;
}

bool CorpusReader::next(Document& doc) {
  while (read_line()) {
    if (is_blank(line_)) continue;
    const size_t bad = find_invalid_utf8(line_);
    if (bad != std::string::npos) {
      bad_line(fmt::format("invalid UTF-8 at byte {}", bad));
      continue;
    }
    const bool ok = format_ == CorpusFormat::kTsv ? parse_tsv(doc) : parse_jsonl(doc);
    if (!ok) continue;
    doc.line = stats_.lines;
    ++stats_.documents;
    return true;
  }
  if (stats_.documents == 0 && !allow_empty_) fail_empty();
  return false;
}

void CorpusReader::fail_empty() const {
  std::string why;
  if (stats_.lines == 0) {
    why = "the file is empty";
  } else if (stats_.bad_lines == 0) {
    why = header_end_ > 0 ? "the file has only its TSV header" : "the file has only blank lines";
  } else {
    const auto& [line, reason] = stats_.bad_examples.front();
    why = fmt::format("all {} document lines are bad; the first, line {}: {}", stats_.bad_lines,
                      line, reason);
  }
  fail("corpus {}: no documents ({}); pass --allow-empty to accept", path_, why);
}

}  // namespace kvrag
