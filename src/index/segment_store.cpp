// SQLite + FTS5 segment store and its builder (see segment_store.h).
#include "index/segment_store.h"

#include <omp.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unicode/uchar.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "core/error.h"
#include "text/utf8.h"

namespace kvrag {

namespace {

constexpr const char* kFormat = "kvrag-segment-store-1";
constexpr const char* kFtsTokenizer = "porter unicode61 remove_diacritics 2";

// Owns a prepared statement.
struct Stmt {
  sqlite3_stmt* s = nullptr;
  Stmt() = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s); }
  operator sqlite3_stmt*() const { return s; }
};

// Resets a statement (and its bindings) when a scope ends, so it is ready for the next call
// whatever happened in between.
struct ResetOnExit {
  sqlite3_stmt* s;
  ~ResetOnExit() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
};

void bind_text(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
}

std::string column_text(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string();
}

// Query words that carry (almost) no information for BM25: Lucene's English stop set (what
// Anserini/Pyserini drop at indexing) plus the interrogatives, auxiliaries and pronouns that
// fill natural-language questions. Dropping them keeps OR queries from scoring every row that
// contains "the" — which matters at 10M rows — and on nq-oracle slightly improves ranking.
const std::unordered_set<std::string>& stop_words() {
  static const std::unordered_set<std::string> words = {
      // Lucene EnglishAnalyzer.ENGLISH_STOP_WORDS_SET
      "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
      "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
      "they", "this", "to", "was", "will", "with",
      // question words, auxiliaries, pronouns, clitics
      "who", "whom", "whose", "what", "when", "where", "which", "why", "how", "do", "does", "did",
      "has", "have", "had", "i", "me", "my", "we", "our", "you", "your", "he", "him", "his", "she",
      "her", "its", "them", "from", "about", "s", "t"};
  return words;
}

// Letters, digits and combining marks make terms; everything else separates them.
bool is_term_char(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  const int32_t mask = U_GET_GC_MASK(static_cast<UChar32>(c));
  return (mask & (U_GC_L_MASK | U_GC_N_MASK | U_GC_M_MASK)) != 0;
}

// Field-by-field description of how two fingerprints differ: "window: 288 → 512, …".
std::string describe_difference(const nlohmann::json& was, const nlohmann::json& now) {
  std::string out;
  for (auto it = now.begin(); it != now.end(); ++it) {
    const auto old = was.find(it.key());
    const std::string before = old == was.end() ? "(none)" : old->dump();
    if (old != was.end() && *old == it.value()) continue;
    if (!out.empty()) out += ", ";
    out += fmt::format("{}: {} → {}", it.key(), before, it.value().dump());
  }
  return out.empty() ? "fingerprints differ" : out;
}

}  // namespace

struct SegmentStore::Statements {
  Stmt insert_segment, insert_fts, get, size, search, score, meta_get, meta_set;
};

SegmentStore::SegmentStore() = default;

SegmentStore::~SegmentStore() {
  st_.reset();  // statements before the connection
  if (db_ != nullptr) sqlite3_close(db_);
}

void SegmentStore::fail_sqlite(const std::string& what) const {
  fail("segment store {}: {}: {}", path_, what, db_ ? sqlite3_errmsg(db_) : "out of memory");
}

void SegmentStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    fail("segment store {}: {}", path_, msg);
  }
}

std::unique_ptr<SegmentStore> SegmentStore::open(const std::string& path, bool create) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) fail("segment store {}: is a directory", path);
  if (!create && !fs::exists(path, ec)) fail("segment store {}: no such file", path);

  std::unique_ptr<SegmentStore> store(new SegmentStore());
  store->path_ = path;
  const int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
  int rc = sqlite3_open_v2(path.c_str(), &store->db_, flags, nullptr);
  if (rc != SQLITE_OK && !create) {
    // A read-only file (shared material): open it read-only.
    sqlite3_close(store->db_);
    store->db_ = nullptr;
    rc = sqlite3_open_v2(path.c_str(), &store->db_, SQLITE_OPEN_READONLY, nullptr);
    store->read_only_ = true;
  }
  if (rc != SQLITE_OK) store->fail_sqlite("cannot open");
  sqlite3_extended_result_codes(store->db_, 1);
  sqlite3_busy_timeout(store->db_, 10000);
  store->check_schema(create);

  // The statements, once. A read-only store prepares its INSERTs too (they fail on step).
  auto& st = store->st_;
  st = std::make_unique<Statements>();
  auto prepare = [&](Stmt& s, const char* sql) {
    if (sqlite3_prepare_v3(store->db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &s.s, nullptr) !=
        SQLITE_OK) {
      store->fail_sqlite(fmt::format("cannot prepare '{}'", sql));
    }
  };
  prepare(st->insert_segment,
          "INSERT INTO segments(id, doc_id, title, text, token_begin, token_end, char_begin, "
          "char_end) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  prepare(st->insert_fts, "INSERT INTO segments_fts(rowid, body) VALUES (?1, ?2)");
  prepare(st->get,
          "SELECT doc_id, title, text, token_begin, token_end, char_begin, char_end FROM segments "
          "WHERE id = ?1");
  prepare(st->size, "SELECT COALESCE(MAX(id) + 1, 0) FROM segments");
  prepare(
      st->search,
      "SELECT rowid, rank FROM segments_fts WHERE segments_fts MATCH ?1 ORDER BY rank LIMIT ?2");
  prepare(st->score, "SELECT rank FROM segments_fts WHERE segments_fts MATCH ?1 AND rowid = ?2");
  prepare(st->meta_get, "SELECT value FROM meta WHERE key = ?1");
  prepare(st->meta_set, "INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
  return store;
}

void SegmentStore::check_schema(bool create) {
  // The first read of the file: this is where a file that is not a database shows.
  std::vector<std::string> tables;
  {
    Stmt s;
    int rc = sqlite3_prepare_v2(db_, "SELECT name FROM sqlite_master WHERE type = 'table'", -1,
                                &s.s, nullptr);
    if (rc == SQLITE_OK) {
      while ((rc = sqlite3_step(s)) == SQLITE_ROW) tables.push_back(column_text(s, 0));
    }
    if (rc != SQLITE_DONE) {
      const int primary = sqlite3_errcode(db_) & 0xff;
      if (primary == SQLITE_NOTADB) {
        fail("segment store {}: not an SQLite database ({})", path_, sqlite3_errmsg(db_));
      }
      fail_sqlite("cannot read the schema");
    }
  }
  auto has = [&](const char* name) {
    return std::find(tables.begin(), tables.end(), name) != tables.end();
  };

  if (tables.empty()) {
    KVRAG_CHECK(create && !read_only_,
                "segment store {}: not a kvrag segment store (the database is empty)", path_);
    exec("PRAGMA journal_mode = WAL");
    exec("BEGIN");
    exec(
        "CREATE TABLE segments(id INTEGER PRIMARY KEY, doc_id TEXT NOT NULL, title TEXT NOT NULL, "
        "text TEXT NOT NULL, token_begin INTEGER NOT NULL, token_end INTEGER NOT NULL, char_begin "
        "INTEGER NOT NULL, char_end INTEGER NOT NULL)");
    exec(
        fmt::format("CREATE VIRTUAL TABLE segments_fts USING fts5(body, content='', tokenize='{}')",
                    kFtsTokenizer)
            .c_str());
    exec("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)");
    exec(
        fmt::format("INSERT INTO meta(key, value) VALUES ('format', '{}'), ('fts_tokenizer', '{}')",
                    kFormat, kFtsTokenizer)
            .c_str());
    exec("COMMIT");
  } else {
    for (const char* t : {"segments", "segments_fts", "meta"}) {
      KVRAG_CHECK(has(t), "segment store {}: not a kvrag segment store (no table '{}')", path_, t);
    }
    Stmt s;
    if (sqlite3_prepare_v2(db_, "SELECT value FROM meta WHERE key = 'format'", -1, &s.s, nullptr) !=
        SQLITE_OK) {
      fail_sqlite("cannot read the format");
    }
    const int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail_sqlite("cannot read the format");
    const std::string format = rc == SQLITE_ROW ? column_text(s, 0) : "(none)";
    KVRAG_CHECK(format == kFormat, "segment store {}: format '{}' is not '{}'", path_, format,
                kFormat);
    if (!read_only_) exec("PRAGMA journal_mode = WAL");
  }
  exec("PRAGMA synchronous = NORMAL");
  exec("PRAGMA cache_size = -65536");  // 64 MiB of page cache
}

// --- writing ------------------------------------------------------------------------------------

void SegmentStore::add_segments(std::vector<Segment>& segments,
                                const std::vector<std::pair<std::string, std::string>>& meta) {
  std::lock_guard<std::mutex> lock(mutex_);
  exec("BEGIN IMMEDIATE");
  try {
    int64_t id = 0;
    {
      ResetOnExit r{st_->size};
      if (sqlite3_step(st_->size) != SQLITE_ROW) fail_sqlite("cannot count segments");
      id = sqlite3_column_int64(st_->size, 0);
    }
    std::string body;
    for (Segment& seg : segments) {
      seg.id = id++;
      {
        sqlite3_stmt* s = st_->insert_segment;
        ResetOnExit r{s};
        sqlite3_bind_int64(s, 1, seg.id);
        bind_text(s, 2, seg.doc_id);
        bind_text(s, 3, seg.title);
        bind_text(s, 4, seg.text);
        sqlite3_bind_int(s, 5, seg.token_begin);
        sqlite3_bind_int(s, 6, seg.token_end);
        sqlite3_bind_int(s, 7, seg.char_begin);
        sqlite3_bind_int(s, 8, seg.char_end);
        if (sqlite3_step(s) != SQLITE_DONE)
          fail_sqlite(fmt::format("cannot insert segment {}", seg.id));
      }
      {
        // Indexed text: "title\ntext", as one field (see the header).
        body.clear();
        if (!seg.title.empty()) (body += seg.title) += '\n';
        body += seg.text;
        sqlite3_stmt* s = st_->insert_fts;
        ResetOnExit r{s};
        sqlite3_bind_int64(s, 1, seg.id);
        bind_text(s, 2, body);
        if (sqlite3_step(s) != SQLITE_DONE)
          fail_sqlite(fmt::format("cannot index segment {}", seg.id));
      }
    }
    for (const auto& [key, value] : meta) {
      sqlite3_stmt* s = st_->meta_set;
      ResetOnExit r{s};
      bind_text(s, 1, key);
      bind_text(s, 2, value);
      if (sqlite3_step(s) != SQLITE_DONE) fail_sqlite("cannot write meta '" + key + "'");
    }
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void SegmentStore::set_meta(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* s = st_->meta_set;
  ResetOnExit r{s};
  bind_text(s, 1, key);
  bind_text(s, 2, value);
  if (sqlite3_step(s) != SQLITE_DONE) fail_sqlite("cannot write meta '" + key + "'");
}

void SegmentStore::optimize() {
  std::lock_guard<std::mutex> lock(mutex_);
  exec("INSERT INTO segments_fts(segments_fts) VALUES ('optimize')");
  exec("PRAGMA wal_checkpoint(TRUNCATE)");
}

// --- reading ------------------------------------------------------------------------------------

int64_t SegmentStore::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  ResetOnExit r{st_->size};
  if (sqlite3_step(st_->size) != SQLITE_ROW) fail_sqlite("cannot count segments");
  return sqlite3_column_int64(st_->size, 0);
}

Segment SegmentStore::get(int64_t id) const {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* s = st_->get;
  ResetOnExit r{s};
  sqlite3_bind_int64(s, 1, id);
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) {
    sqlite3_reset(s);
    int64_t n = 0;
    {
      ResetOnExit rs{st_->size};
      if (sqlite3_step(st_->size) == SQLITE_ROW) n = sqlite3_column_int64(st_->size, 0);
    }
    fail("segment store {}: segment id {} out of range (the store has {} segments)", path_, id, n);
  }
  if (rc != SQLITE_ROW) fail_sqlite(fmt::format("cannot read segment {}", id));
  Segment seg;
  seg.id = id;
  seg.doc_id = column_text(s, 0);
  seg.title = column_text(s, 1);
  seg.text = column_text(s, 2);
  seg.token_begin = sqlite3_column_int(s, 3);
  seg.token_end = sqlite3_column_int(s, 4);
  seg.char_begin = sqlite3_column_int(s, 5);
  seg.char_end = sqlite3_column_int(s, 6);
  return seg;
}

std::vector<Segment> SegmentStore::get_many(const std::vector<int64_t>& ids) const {
  std::vector<Segment> out;
  out.reserve(ids.size());
  for (int64_t id : ids) out.push_back(get(id));
  return out;
}

std::optional<std::string> SegmentStore::meta(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* s = st_->meta_get;
  ResetOnExit r{s};
  bind_text(s, 1, key);
  const int rc = sqlite3_step(s);
  if (rc == SQLITE_DONE) return std::nullopt;
  if (rc != SQLITE_ROW) fail_sqlite("cannot read meta '" + key + "'");
  return column_text(s, 0);
}

std::vector<std::string> SegmentStore::query_terms(const std::string& query) {
  std::u32string cps;
  try {
    decode_utf8(query, cps);
  } catch (Error& e) {
    throw e.with_context("query");
  }
  std::vector<std::string> terms;
  std::string term;
  auto flush = [&] {
    if (!term.empty()) terms.push_back(std::move(term));
    term.clear();
  };
  for (char32_t c : cps) {
    if (!is_term_char(c)) {
      flush();
      continue;
    }
    if (c < 0x80) {
      term += static_cast<char>(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
    } else {
      append_utf8(term, static_cast<char32_t>(u_tolower(static_cast<UChar32>(c))));
    }
  }
  flush();
  std::vector<std::string> content;
  for (const std::string& t : terms) {
    if (stop_words().count(t) == 0) content.push_back(t);
  }
  return content.empty() ? terms : content;
}

std::string SegmentStore::fts_query(const std::string& query) {
  std::string out;
  for (const std::string& t : query_terms(query)) {
    if (!out.empty()) out += " OR ";
    // Terms hold no '"' (it is a separator), so quoting needs no escapes.
    (out += '"') += t;
    out += '"';
  }
  return out;
}

std::vector<ScoredSegment> SegmentStore::bm25(const std::string& query, int k) const {
  std::vector<ScoredSegment> out;
  const std::string match = fts_query(query);
  if (match.empty() || k <= 0) return out;
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* s = st_->search;
  ResetOnExit r{s};
  bind_text(s, 1, match);
  sqlite3_bind_int(s, 2, k);
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    out.push_back({sqlite3_column_int64(s, 0), -sqlite3_column_double(s, 1)});
  }
  if (rc != SQLITE_DONE) fail_sqlite(fmt::format("BM25 query '{}' failed", match));
  return out;
}

std::vector<float> SegmentStore::bm25_scores(const std::string& query,
                                             const std::vector<int64_t>& ids) const {
  std::vector<float> out(ids.size(), 0.0f);
  const std::string match = fts_query(query);
  if (match.empty()) return out;
  std::lock_guard<std::mutex> lock(mutex_);
  sqlite3_stmt* s = st_->score;
  for (size_t i = 0; i < ids.size(); ++i) {
    ResetOnExit r{s};
    bind_text(s, 1, match);
    sqlite3_bind_int64(s, 2, ids[i]);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      out[i] = static_cast<float>(-sqlite3_column_double(s, 0));
    } else if (rc != SQLITE_DONE) {
      fail_sqlite(fmt::format("BM25 score of segment {} for '{}' failed", ids[i], match));
    }
  }
  return out;
}

// --- the builder --------------------------------------------------------------------------------

namespace {

using nlohmann::json;

json make_fingerprint(const std::string& corpus_path, CorpusFormat format,
                      const SegmentBuildOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path canonical = fs::weakly_canonical(corpus_path, ec);
  struct stat st {};
  if (::stat(corpus_path.c_str(), &st) != 0) {
    fail("corpus {}: cannot stat: {}", corpus_path, std::strerror(errno));
  }
  const int64_t mtime_ns =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return json{{"corpus", ec ? corpus_path : canonical.string()},
              {"corpus_size", static_cast<int64_t>(st.st_size)},
              {"corpus_mtime_ns", mtime_ns},
              {"format", corpus_format_name(format)},
              {"tokenizer", options.tokenizer_id},
              {"window", options.segmenter.window},
              {"stride", options.segmenter.stride},
              {"prepend_title", options.segmenter.prepend_title}};
}

json stats_to_json(int64_t offset, const CorpusStats& s) {
  json bad = json::array();
  for (const auto& [line, reason] : s.bad_examples) bad.push_back(json::array({line, reason}));
  return json{{"offset", offset},
              {"lines", s.lines},
              {"documents", s.documents},
              {"bad_lines", s.bad_lines},
              {"bad_examples", bad}};
}

CorpusStats stats_from_json(const json& j, int64_t& offset) {
  CorpusStats s;
  offset = j.at("offset").get<int64_t>();
  s.lines = j.at("lines").get<int64_t>();
  s.documents = j.at("documents").get<int64_t>();
  s.bad_lines = j.at("bad_lines").get<int64_t>();
  for (const auto& e : j.at("bad_examples")) {
    s.bad_examples.emplace_back(e.at(0).get<int64_t>(), e.at(1).get<std::string>());
  }
  return s;
}

}  // namespace

SegmentBuildResult build_segment_store(
    const std::string& store_path, const std::string& corpus_path,
    const WordPieceTokenizer& tokenizer, const SegmentBuildOptions& options,
    const std::function<void(const SegmentBuildProgress&)>& on_progress) {
  namespace fs = std::filesystem;
  validate(options.segmenter);
  KVRAG_CHECK(options.batch_documents > 0, "batch size must be positive, got {}",
              options.batch_documents);
  if (!options.allow_empty) {
    // Reads up to the first document: the reader throws at the end of a corpus without one.
    CorpusReader probe(corpus_path, options.format, options.strict);
    Document first;
    probe.next(first);
  }

  if (options.overwrite) {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::error_code ec;
      fs::remove(store_path + suffix, ec);
      if (ec)
        fail("segment store {}: cannot remove {}: {}", store_path, store_path + suffix,
             ec.message());
    }
  }
  const fs::path parent = fs::path(store_path).parent_path();
  if (!parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec)
      fail("segment store {}: cannot create directory {}: {}", store_path, parent.string(),
           ec.message());
  }

  CorpusReader reader(corpus_path, options.format, options.strict, options.allow_empty);
  const json fingerprint = make_fingerprint(corpus_path, reader.format(), options);
  auto store = SegmentStore::open(store_path, /*create=*/true);

  // Same input as the run that made this store, or a fresh store.
  if (const auto stored = store->meta("fingerprint")) {
    json was;
    try {
      was = json::parse(*stored);
    } catch (const json::exception&) {
      fail("segment store {}: unreadable fingerprint in meta", store_path);
    }
    if (was != fingerprint) {
      fail(
          "segment store {} was built from a different corpus or with different options ({}); use "
          "a new --index directory, or --overwrite to rebuild it",
          store_path, describe_difference(was, fingerprint));
    }
  } else {
    KVRAG_CHECK(store->size() == 0,
                "segment store {} holds segments but no corpus fingerprint (it was not made by "
                "`kvrag segment`); use a new --index directory, or --overwrite to rebuild it",
                store_path);
    // "segmenter" is for the commands that encode segments (they need prepend_title).
    json segmenter = {{"window", options.segmenter.window},
                      {"stride", options.segmenter.stride},
                      {"prepend_title", options.segmenter.prepend_title},
                      {"tokenizer", options.tokenizer_id}};
    if (!options.tokenizer_file.empty()) segmenter["tokenizer_file"] = options.tokenizer_file;
    std::vector<Segment> none;
    store->add_segments(none,
                        {{"segmenter", segmenter.dump()}, {"fingerprint", fingerprint.dump()}});
  }

  SegmentBuildResult result;
  if (const auto progress = store->meta("progress")) {
    int64_t offset = 0;
    CorpusStats stats;
    try {
      stats = stats_from_json(json::parse(*progress), offset);
    } catch (const json::exception& e) {
      fail("segment store {}: unreadable progress in meta: {}", store_path, e.what());
    }
    if (store->meta("complete") == std::optional<std::string>("1")) {
      result.up_to_date = result.complete = true;
      result.segments = store->size();
      result.stats = std::move(stats);
      return result;
    }
    result.resumed = true;
    result.resumed_at_line = stats.lines;
    reader.resume_at(offset, std::move(stats));
  }

  SegmentBuildProgress progress;
  progress.bytes_total = reader.file_size();
  progress.start_bytes = progress.bytes_done = reader.bytes_read();
  progress.start_documents = progress.documents = reader.stats().documents;
  progress.resumed = result.resumed;
  progress.segments = store->size();
  const int threads = options.threads > 0 ? options.threads : omp_get_max_threads();

  std::vector<Document> docs;
  std::vector<std::vector<Segment>> windows;
  std::vector<std::string> errors;
  std::vector<Segment> batch;
  for (int64_t batches = 0;;) {
    // 1. Read a batch; the callback sees every document (and a kill between two of them loses
    //    only this batch).
    docs.clear();
    for (Document doc;
         static_cast<int64_t>(docs.size()) < options.batch_documents && reader.next(doc);) {
      docs.push_back(std::move(doc));
      progress.documents = reader.stats().documents;
      progress.bytes_done = reader.bytes_read();
      if (on_progress) on_progress(progress);
    }
    const bool at_end = static_cast<int64_t>(docs.size()) < options.batch_documents;

    // 2. Segment it on all threads (tokenization is most of the work). Errors are collected
    //    and the first one in corpus order is thrown, so results do not depend on scheduling.
    const auto n = static_cast<int64_t>(docs.size());
    windows.assign(docs.size(), {});
    errors.assign(docs.size(), {});
    auto segment_one = [&](int64_t i) {
      try {
        windows[i] = segment_document(docs[i], tokenizer, options.segmenter);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    };
    if (threads == 1) {
      // No OpenMP at all: safe in a process forked from one whose OpenMP pool is running.
      for (int64_t i = 0; i < n; ++i) segment_one(i);
    } else {
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads)
      for (int64_t i = 0; i < n; ++i) segment_one(i);
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!errors[i].empty()) {
        fail("corpus {}: line {} (id {}): {}", corpus_path, docs[i].line, docs[i].id, errors[i]);
      }
    }

    // 3. Commit in corpus order, with the position after the batch's last document. The last
    //    (maybe empty) batch also records the bad lines after the last document.
    batch.clear();
    for (auto& w : windows) std::move(w.begin(), w.end(), std::back_inserter(batch));
    const std::string state = stats_to_json(reader.bytes_read(), reader.stats()).dump();
    store->add_segments(batch, {{"progress", state}});
    ++batches;
    progress.segments += static_cast<int64_t>(batch.size());
    progress.bytes_done = reader.bytes_read();
    if (on_progress) on_progress(progress);
    if (at_end) break;
    if (options.max_batches > 0 && batches >= options.max_batches) {
      result.segments = store->size();
      result.stats = reader.stats();
      return result;  // "killed": complete stays false
    }
  }

  if (options.optimize) {
    progress.phase = "optimizing";
    if (on_progress) on_progress(progress);
    store->optimize();
  }
  store->set_meta("complete", "1");
  result.complete = true;
  result.segments = store->size();
  result.stats = reader.stats();
  return result;
}

}  // namespace kvrag
