// The segment store: an SQLite database of segments (dense ids 0..N-1, doc id, title, text,
// token/character span) with an FTS5 full-text index for BM25, plus a key/value metadata table
// (segmenter options, corpus fingerprint, progress of an interrupted run).
//
// Writes happen in transactions (add_segments batches), so a crash leaves the database at the
// last committed batch; the database runs in WAL mode.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "text/segmenter.h"

struct sqlite3;

namespace kvrag {

struct ScoredSegment {
  int64_t id;
  double score;  // higher is better
};

class SegmentStore {
 public:
  // Opens (creating it if `create`) the database at `path`. Throws Error naming the path if it
  // is missing, not an SQLite database, or not a kvrag segment store.
  static std::unique_ptr<SegmentStore> open(const std::string& path, bool create = false);
  ~SegmentStore();

  const std::string& path() const { return path_; }

  // Appends segments with ids size(), size()+1, … (assigned into the structs), in one
  // transaction, together with the metadata updates in `meta` (e.g. resume position).
  void add_segments(std::vector<Segment>& segments,
                    const std::vector<std::pair<std::string, std::string>>& meta = {});

  int64_t size() const;
  Segment get(int64_t id) const;                             // Error if out of range
  std::vector<Segment> get_many(const std::vector<int64_t>& ids) const;

  // BM25 over the FTS5 index; the query is split into terms and OR-ed (any term may match).
  std::vector<ScoredSegment> bm25(const std::string& query, int k) const;

  std::optional<std::string> meta(const std::string& key) const;
  void set_meta(const std::string& key, const std::string& value);

 private:
  SegmentStore() = default;
  std::string path_;
  sqlite3* db_ = nullptr;
};

}  // namespace kvrag
