// Natural Questions (simplified) → corpus, gold passages and question files (see prepare_nq.h).
#include "index/prepare_nq.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fingerprint.h"
#include "core/line_reader.h"
#include "core/progress.h"
#include "core/splitmix64.h"

namespace kvrag {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// An AtomicFile written through a buffer of about 1 MiB.
class BufferedAtomicFile {
 public:
  explicit BufferedAtomicFile(std::string path) : file_(std::move(path)) {}
  void write_line(const ordered_json& j) {
    buffer_ += j.dump(-1, ' ', false, json::error_handler_t::replace);
    buffer_ += '\n';
    if (buffer_.size() >= (1u << 20)) flush();
  }
  void commit() {
    flush();
    file_.commit();
  }

 private:
  void flush() {
    file_.write(buffer_);
    buffer_.clear();
  }
  AtomicFile file_;
  std::string buffer_;
};

// document_text split at single spaces, as NQ counts its tokens (empty tokens kept, so indices
// stay right even where two spaces meet).
std::vector<std::string_view> split_tokens(std::string_view text) {
  std::vector<std::string_view> tokens;
  size_t start = 0;
  for (;;) {
    const size_t space = text.find(' ', start);
    tokens.push_back(text.substr(start, space == std::string_view::npos ? space : space - start));
    if (space == std::string_view::npos) break;
    start = space + 1;
  }
  return tokens;
}

bool is_tag(std::string_view t) { return t.size() >= 2 && t.front() == '<' && t.back() == '>'; }

// The tokens [begin, end) that are not tags (nor empty), joined with single spaces.
std::string span_text(const std::vector<std::string_view>& tokens, int64_t begin, int64_t end) {
  std::string text;
  for (int64_t i = begin; i < end; ++i) {
    const std::string_view t = tokens[static_cast<size_t>(i)];
    if (t.empty() || is_tag(t)) continue;
    if (!text.empty()) text += ' ';
    text += t;
  }
  return text;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %xx decoded ('%' without two hex digits kept as it is), '_' → ' ', and '+' → ' ' in a query.
std::string url_decode(std::string_view s, bool query) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
      i += 2;
    } else if (s[i] == '_' || (query && s[i] == '+')) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

// FNV-1a 64 (the seed's bytes, little-endian on every platform, then the id) and the splitmix64
// finaliser: an even spread even for ids that differ in one digit.
uint64_t split_hash(const std::string& example_id, uint64_t seed) {
  unsigned char seed_bytes[8];
  for (int i = 0; i < 8; ++i) seed_bytes[i] = static_cast<unsigned char>(seed >> (8 * i));
  Fnv1a64 fnv;
  fnv.add(seed_bytes, sizeof seed_bytes);
  fnv.add(example_id.data(), example_id.size());
  return splitmix64_mix(fnv.value());
}

struct Span {
  int64_t begin = -1, end = -1;
};

// One parsed example.
struct Example {
  std::string id, question, url, text;
  std::optional<Span> long_answer;  // the first annotation's that has one
  std::vector<Span> short_answers;  // of every annotation
  std::vector<std::string> yes_no;  // "yes" / "no" of every annotation
};

std::optional<int64_t> int_field(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

std::optional<Span> span_field(const json& object) {
  if (!object.is_object()) return std::nullopt;
  const auto begin = int_field(object, "start_token"), end = int_field(object, "end_token");
  if (!begin || !end) return std::nullopt;
  return Span{*begin, *end};
}

// Parses a line into `ex`; returns why the line is malformed, or "" if it is not.
std::string parse_example(const std::string& line, Example& ex) {
  // long_answer_candidates is not needed: dropped while parsing (it is most of a line's nodes).
  const json::parser_callback_t drop_candidates = [](int depth, json::parse_event_t event,
                                                     json& parsed) {
    return !(event == json::parse_event_t::key && depth == 1 && parsed == "long_answer_candidates");
  };
  json j = json::parse(line, drop_candidates, /*allow_exceptions=*/false);
  if (j.is_discarded()) return "invalid JSON";
  if (!j.is_object()) return "not a JSON object";
  auto id = j.find("example_id");
  if (id == j.end() || !(id->is_string() || id->is_number_integer())) {
    return "missing \"example_id\"";
  }
  ex.id = id->is_string() ? id->get<std::string>() : id->dump();
  for (auto [key, target] :
       {std::pair{"question_text", &ex.question}, std::pair{"document_url", &ex.url},
        std::pair{"document_text", &ex.text}}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_string()) {
      return fmt::format("missing \"{}\"", key);
    }
    *target = it->get<std::string>();
  }
  if (ex.url.empty()) return "empty \"document_url\"";
  auto annotations = j.find("annotations");
  if (annotations == j.end() || !annotations->is_array()) {
    return "missing \"annotations\"";
  }
  for (const json& a : *annotations) {
    if (!a.is_object() || !a.contains("long_answer")) {
      return "an annotation without \"long_answer\"";
    }
    const json& la = a["long_answer"];
    const auto span = span_field(la);
    if (!span) return "a long_answer without start_token / end_token";
    const auto candidate = int_field(la, "candidate_index");  // -1: no long answer
    const bool has_long = candidate ? *candidate >= 0 : span->begin >= 0;
    if (has_long && !ex.long_answer) ex.long_answer = span;
    if (auto sa = a.find("short_answers"); sa != a.end() && !sa->is_null()) {
      if (!sa->is_array()) return "\"short_answers\" is not an array";
      for (const json& s : *sa) {
        const auto short_span = span_field(s);
        if (!short_span) return "a short answer without start/end_token";
        ex.short_answers.push_back(*short_span);
      }
    }
    if (auto yn = a.find("yes_no_answer"); yn != a.end() && yn->is_string()) {
      if (*yn == "YES") ex.yes_no.emplace_back("yes");
      if (*yn == "NO") ex.yes_no.emplace_back("no");
    }
  }
  return "";
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r") == std::string::npos; }

std::string trimmed(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

}  // namespace

int64_t PrepareNqResult::total_skipped() const {
  int64_t n = 0;
  for (const auto& [reason, count] : skipped) n += count;
  return n;
}

bool nq_is_tag(const std::string& token) { return is_tag(token); }

bool nq_is_dev(const std::string& example_id, uint64_t seed, double train_fraction) {
  const double u = static_cast<double>(split_hash(example_id, seed) >> 11) * 0x1.0p-53;
  return u >= train_fraction;
}

std::string nq_title_from_url(const std::string& url) {
  const std::string_view u(url);
  std::string_view part;
  bool query = false;
  const size_t q = u.find('?');
  if (q != std::string_view::npos) {
    // title= as a query parameter (after '?' or '&', "&amp;" included).
    for (size_t at = q; at != std::string_view::npos && part.empty(); at = u.find('&', at + 1)) {
      std::string_view rest = u.substr(at + 1);
      if (rest.substr(0, 4) == "amp;") rest.remove_prefix(4);
      if (rest.substr(0, 6) != "title=") continue;
      rest.remove_prefix(6);
      part = rest.substr(0, rest.find_first_of("&#"));
      query = true;
    }
  }
  if (part.empty()) {
    std::string_view path = u.substr(0, std::min(q, u.find('#')));
    if (const size_t wiki = path.find("/wiki/"); wiki != std::string_view::npos) {
      part = path.substr(wiki + 6);
    } else {
      while (!path.empty() && path.back() == '/') path.remove_suffix(1);
      const size_t slash = path.rfind('/');
      part = slash == std::string_view::npos ? path : path.substr(slash + 1);
    }
  }
  std::string title = trimmed(url_decode(part, query));
  return title.empty() ? url : title;
}

PrepareNqResult prepare_nq(const std::string& input, const std::string& out_dir,
                           const PrepareNqOptions& options) {
  KVRAG_CHECK(options.train_fraction > 0 && options.train_fraction <= 1,
              "prepare-nq: the train fraction must lie in (0, 1], got {}", options.train_fraction);
  LineReader reader(input);
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  KVRAG_CHECK(!ec, "{}: cannot create the output folder: {}", out_dir, ec.message());

  PrepareNqResult r;
  r.corpus_path = out_dir + "/corpus.jsonl";
  r.passages_path = out_dir + "/passages.jsonl";
  r.train_path = out_dir + "/questions-train.jsonl";
  r.dev_path = out_dir + "/questions-dev.jsonl";
  BufferedAtomicFile corpus(r.corpus_path), passages(r.passages_path), train(r.train_path),
      dev(r.dev_path);

  std::unordered_map<std::string, int64_t> document_ids;  // URL → corpus id
  std::unordered_set<std::string> passage_ids;
  int64_t valid = 0;
  ProgressOptions po;
  po.label = "prepare-nq";
  po.unit = "lines";
  po.total_bytes = reader.file_size();
  po.enabled = options.progress;
  ProgressReporter progress(po);

  std::string line;
  while (reader.next(line)) {
    ++r.lines;
    progress.set_note(fmt::format("kept {}, skipped {}", r.train + r.dev, r.total_skipped()));
    progress.update(reader.bytes_read(), r.lines);
    if (blank(line)) continue;
    auto skip = [&r](const char* reason) { ++r.skipped[reason]; };

    Example ex;
    if (const std::string why = parse_example(line, ex); !why.empty()) {
      skip("malformed line");
      if (r.first_malformed_line == 0) {
        r.first_malformed_line = reader.line_number();
        r.first_malformed_reason = why;
      }
      continue;
    }
    ++valid;
    const std::string question = trimmed(ex.question);
    if (question.empty()) {
      skip("empty question");
      continue;
    }
    if (!ex.long_answer) {
      skip("no long answer");
      continue;
    }
    const std::vector<std::string_view> tokens = split_tokens(ex.text);
    const auto n_tokens = static_cast<int64_t>(tokens.size());
    auto in_range = [n_tokens](const Span& s) {
      return s.begin >= 0 && s.begin < s.end && s.end <= n_tokens;
    };
    bool spans_ok = in_range(*ex.long_answer);
    for (const Span& s : ex.short_answers) spans_ok = spans_ok && in_range(s);
    if (!spans_ok) {
      skip("bad span");
      continue;
    }
    const Span gold = *ex.long_answer;
    std::string gold_text = span_text(tokens, gold.begin, gold.end);
    if (gold_text.empty()) {
      skip("empty long answer");
      continue;
    }

    // The document, once per URL.
    auto [doc, new_doc] = document_ids.try_emplace(ex.url, r.documents);
    const std::string title = nq_title_from_url(ex.url);
    if (new_doc) {
      corpus.write_line(ordered_json{
          {"id", doc->second}, {"title", title}, {"text", span_text(tokens, 0, n_tokens)}});
      ++r.documents;
    }
    const std::string passage_id = fmt::format("{}:{}-{}", doc->second, gold.begin, gold.end);
    if (passage_ids.insert(passage_id).second) {
      passages.write_line(
          ordered_json{{"id", passage_id}, {"title", title}, {"text", std::move(gold_text)}});
      ++r.passages;
    }

    std::vector<std::string> answers;
    auto add_answer = [&answers](std::string a) {
      if (a.empty()) return;
      for (const auto& b : answers) {
        if (b == a) return;
      }
      answers.push_back(std::move(a));
    };
    for (const Span& s : ex.short_answers) add_answer(span_text(tokens, s.begin, s.end));
    for (const std::string& yn : ex.yes_no) add_answer(yn);
    if (answers.empty()) ++r.without_answers;

    const ordered_json q{{"question", question},
                         {"answers", answers},
                         {"gold_passage_id", passage_id},
                         {"document_id", doc->second},
                         {"example_id", ex.id}};
    if (nq_is_dev(ex.id, options.seed, options.train_fraction)) {
      dev.write_line(q);
      ++r.dev;
    } else {
      train.write_line(q);
      ++r.train;
    }
  }
  progress.set_note(fmt::format("kept {}, skipped {}", r.train + r.dev, r.total_skipped()));
  progress.finish(reader.bytes_read(), r.lines);

  if (valid == 0) {
    if (r.first_malformed_line == 0) {
      fail("NQ file {}: no examples (the file is {})", input,
           r.lines == 0 ? "empty" : "blank lines only");
    }
    fail("NQ file {}: no valid example: all {} non-blank lines are malformed (line {}: {})", input,
         r.skipped["malformed line"], r.first_malformed_line, r.first_malformed_reason);
  }
  corpus.commit();
  passages.commit();
  train.commit();
  dev.commit();
  return r;
}

}  // namespace kvrag
