// The segment store: an SQLite database of segments (dense ids 0..N-1, doc id, title, text,
// token/character span) with an FTS5 full-text index for BM25, plus a key/value metadata table
// (segmenter options, corpus fingerprint, progress of an interrupted run).
//
// Schema (format "kvrag-segment-store-1", recorded in meta):
//
//   segments(id INTEGER PRIMARY KEY, doc_id, title, text,
//            token_begin, token_end, char_begin, char_end)
//   segments_fts  FTS5, contentless (content=''), one column `body` = title "\n" text, rowid =
//                 segments.id, tokenizer 'porter unicode61 remove_diacritics 2'
//   meta(key TEXT PRIMARY KEY, value TEXT)
//
// Why contentless with one column: the text lives once, in `segments`; the index holds only
// postings and per-row lengths, which is all bm25() needs (≈10M rows stay a few GB). Title and
// text share one field, as in Pyserini's DPR index ("title\ntext"), so scores are those of a
// standard single-field BM25 (FTS5's k1 = 1.2, b = 0.75) over Porter-stemmed, case- and
// accent-folded tokens. The store is append-only, so the contentless table's lack of DELETE
// does not matter; a rebuild starts a new file.
//
// Writes happen in transactions (add_segments batches), so a crash leaves the database at the
// last committed batch; the database runs in WAL mode (synchronous=NORMAL: a crash of the
// process never loses a committed batch, a power loss may lose the last ones). A store may be
// used from several threads: calls are serialised on one connection.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "text/corpus_reader.h"
#include "text/segmenter.h"

struct sqlite3;

namespace kvrag {

struct ScoredSegment {
  int64_t id;
  double score;  // higher is better

  bool operator==(const ScoredSegment& o) const { return id == o.id && score == o.score; }
};

class SegmentStore {
 public:
  // Opens (creating it if `create` and missing or empty) the database at `path`. Throws Error
  // naming the path if it is missing, not an SQLite database, or not a kvrag segment store.
  // A file that cannot be opened for writing is opened read-only (writes then throw).
  static std::unique_ptr<SegmentStore> open(const std::string& path, bool create = false);
  ~SegmentStore();
  SegmentStore(const SegmentStore&) = delete;
  SegmentStore& operator=(const SegmentStore&) = delete;

  const std::string& path() const { return path_; }

  // Appends segments with ids size(), size()+1, … (assigned into the structs), in one
  // transaction, together with the metadata updates in `meta` (e.g. resume position).
  void add_segments(std::vector<Segment>& segments,
                    const std::vector<std::pair<std::string, std::string>>& meta = {});

  int64_t size() const;
  Segment get(int64_t id) const;  // Error if out of range
  std::vector<Segment> get_many(const std::vector<int64_t>& ids) const;

  // BM25 over the FTS5 index, best first, at most k. The query is split into terms (see
  // query_terms), each quoted and OR-ed, so any term may match; no term → no results.
  // score = −bm25() (FTS5 returns lower = better).
  std::vector<ScoredSegment> bm25(const std::string& query, int k) const;
  // The same scores for the given segments, in order (0 where no term matches, as BM25 sums
  // over matching terms): what bm25() would rank them by, wherever they rank.
  std::vector<float> bm25_scores(const std::string& query, const std::vector<int64_t>& ids) const;

  // The terms bm25() searches for: the query lowercased (ASCII), split at every character that
  // is not a letter, digit or combining mark (which also drops FTS5's syntax characters), and
  // without English stop words (Lucene's set plus interrogatives, auxiliaries and pronouns:
  // "who", "does", "his", …) unless nothing else is left. Repeated terms are kept (they weigh
  // more, as in Anserini's bag-of-words queries).
  static std::vector<std::string> query_terms(const std::string& query);
  // The FTS5 MATCH expression: "t1" OR "t2" OR … ("" if there are no terms).
  static std::string fts_query(const std::string& query);

  // Merges the full-text index into one b-tree: worth it once after a bulk load (queries read
  // one segment per term instead of dozens). Takes minutes for millions of rows.
  void optimize();

  std::optional<std::string> meta(const std::string& key) const;
  void set_meta(const std::string& key, const std::string& value);

 private:
  struct Statements;  // prepared statements, created at open

  SegmentStore();
  void check_schema(bool create);
  void exec(const char* sql);
  [[noreturn]] void fail_sqlite(const std::string& what) const;

  std::string path_;
  sqlite3* db_ = nullptr;
  bool read_only_ = false;
  std::unique_ptr<Statements> st_;
  mutable std::mutex mutex_;
};

// --- building a store from a corpus (`kvrag segment`) -------------------------------------------
//
// Reads the corpus, segments every document and appends the segments in batches of
// `batch_documents` documents (each batch is segmented on `threads` threads; the result does not
// depend on the thread count). Each batch's transaction also records the resume position
// (meta "progress": byte offset and line after the batch's last document, document count and
// bad-line statistics), so a run killed at any moment continues where the last batch ended.
// meta "fingerprint" identifies the input: corpus path, size and mtime, format, tokenizer id,
// window, stride, prepend_title. A rerun with the same fingerprint resumes, or does nothing if
// the store is complete (meta "complete" = "1"); a different fingerprint throws Error (use a
// new store or `overwrite`). A corpus without documents throws the CorpusReader's Error ("corpus
// FILE: no documents (the file is empty); pass --allow-empty to accept") before any store is
// made, removed or reported up to date, unless `allow_empty`.

struct SegmentBuildOptions {
  CorpusFormat format = CorpusFormat::kAuto;
  SegmenterOptions segmenter;
  std::string tokenizer_id;  // identifies the tokenizer in the fingerprint (path + content hash)
  // the tokenizer's file, recorded (not in the fingerprint) beside tokenizer_id in meta
  // "segmenter" so that `kvrag embed` can name it when an encoder's tokenizer differs
  std::string tokenizer_file;
  bool strict = false;         // the first bad line throws (not part of the fingerprint)
  bool allow_empty = false;    // a corpus without documents makes an empty store, not an Error
  int batch_documents = 1000;  // documents per transaction
  bool overwrite = false;      // delete an existing store (and its -wal, -shm) first
  bool optimize = true;        // optimize() the full-text index at the end
  int threads = 0;             // segmenting threads; ≤ 0: all cores; 1: no OpenMP
  int64_t max_batches = 0;     // test hook: > 0 stops after this many batches, as if killed
};

struct SegmentBuildProgress {
  const char* phase = "segmenting";  // "segmenting", then "optimizing"
  bool resumed = false;              // this run continues an interrupted one
  int64_t bytes_done = 0, bytes_total = 0;
  int64_t start_bytes = 0;      // where this run started (resume)
  int64_t start_documents = 0;  // documents done when this run started (resume)
  int64_t documents = 0;        // documents read, all runs
  int64_t segments = 0;         // segments made, all runs
};

struct SegmentBuildResult {
  bool up_to_date = false;      // the store was already complete: nothing done
  bool complete = false;        // the whole corpus is in the store
  bool resumed = false;         // this run continued an interrupted one
  int64_t resumed_at_line = 0;  // lines the interrupted run had finished
  int64_t segments = 0;         // segments in the store
  CorpusStats stats;            // of the whole corpus, all runs together
};

SegmentBuildResult build_segment_store(
    const std::string& store_path, const std::string& corpus_path,
    const WordPieceTokenizer& tokenizer, const SegmentBuildOptions& options,
    const std::function<void(const SegmentBuildProgress&)>& on_progress = {});

}  // namespace kvrag
