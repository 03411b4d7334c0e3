// The segment embeddings of an index folder: DIR/embeddings/ holds float16 .npy shards named
// "emb-BBBBBBBBBBBB-EEEEEEEEEEEE.npy" (rows [B, E) of the segment ids, zero-padded to 12
// digits) and "encoder.json" (the encoder that made them: {"path", "fingerprint", "dim",
// "pooling", "max_length"}). Shards come from one `kvrag embed` run or many (--shard i/n, MPI);
// opening checks they tile 0..N-1 exactly. float32 shards are read too.
//
// Each shard written by `kvrag embed` (write_shard) has its checksum beside it, emb-B-E.npy.sum
// (index/block_checksum.h); verify() compares the shards with them. Shards written before kvrag
// recorded checksums have none and are read as before, unchecked.
//
// Nothing is loaded: rows are read from the shards on demand (pread, through the page cache), so
// an EmbeddingSet of any size costs the process no memory beyond what a caller reads into its
// own buffers; get() of scattered rows is what dense re-ranking uses.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "index/block_checksum.h"
#include "index/npy_file.h"

namespace kvrag {

// What a sampled check (ChecksumCheck::kSample) reads at most, besides one block per shard.
constexpr uint64_t kChecksumSampleBytes = uint64_t(64) << 20;

// How much of the shards EmbeddingSet::verify reads.
enum class ChecksumCheck {
  // Every byte of every shard: `kvrag index build` (it reads all the vectors anyway).
  kFull,
  // At most kChecksumSampleBytes, in random blocks, at least one per shard; every block while
  // the set is that small. For opening a retriever: a full pass over a 10M × 768 float16 set is
  // 15 GB of reading (tens of seconds to minutes from a cold disk) at every `kvrag search`,
  // `ask` or `serve` start, while the check is meant to catch a shard replaced or rewritten
  // since the index was built, which changes every block. A single flipped bit in a large set
  // is what `kvrag index build` (kFull) catches.
  kSample,
};

struct ChecksumReport {
  int64_t shards = 0;     // in the set
  int64_t unchecked = 0;  // of them without a recorded checksum (written before kvrag had them)
  uint64_t bytes_read = 0;
};

class EmbeddingSet {
 public:
  // Throws Error naming the folder/file for a missing folder or encoder.json, no shards, gaps,
  // overlaps, a shard whose rows differ from its name, a dimension that differs between shards
  // or from encoder.json, or N != expected_rows (if ≥ 0). Files not named like shards
  // (temporary files of an interrupted writer, notes) are ignored.
  static std::unique_ptr<EmbeddingSet> open(const std::string& embeddings_dir,
                                            int64_t expected_rows = -1);

  const std::string& dir() const { return dir_; }
  int64_t size() const { return size_; }
  int dim() const { return dim_; }
  const nlohmann::json& encoder() const { return encoder_; }  // contents of encoder.json
  std::string fingerprint() const { return encoder_.value("fingerprint", ""); }

  // Rows [begin, begin + n) as float32 into out[n × dim]; Error if out of range.
  void get_range(int64_t begin, int64_t n, float* out) const;
  // Arbitrary rows as float32 into out[ids.size() × dim]; Error for an id out of range.
  void get(const std::vector<int64_t>& ids, float* out) const;
  // Same, for ids[0 .. n); thread-safe (as are all const methods).
  void get(const int64_t* ids, int64_t n, float* out) const;
  // Asks the kernel to read rows [begin, begin + n) ahead, asynchronously (for a sequential
  // pass: prefetch the next batch while working on this one). Out-of-range parts are ignored.
  void prefetch(int64_t begin, int64_t n) const;
  // The same for scattered rows (ids out of range are ignored): the reads of rows not in the
  // page cache then proceed in parallel instead of one after the other.
  void prefetch(const int64_t* ids, int64_t n) const;

  // Compares the shards with their recorded checksums (see ChecksumCheck); Error naming the
  // shard at the first difference ("…/emb-B-E.npy: checksum mismatch in bytes [A, B) (recorded
  // …, found …): the file changed after `kvrag embed` wrote it; …"). `progress`, if given, is
  // called after each shard with the rows checked so far and in all. Thread-safe.
  ChecksumReport verify(
      ChecksumCheck check,
      const std::function<void(int64_t done, int64_t total)>& progress = {}) const;

  // Writes rows [begin, end) of a set, (end − begin) × dim values of `dtype` at `data`, as the
  // shard DIR/shard_name(begin, end) with its checksum (computed from the bytes in memory, not
  // read back). The checksum goes first, each file atomically: a shard is never without its
  // checksum, and a checksum without its shard (a crash in between) is ignored.
  static void write_shard(const std::string& dir, int64_t begin, int64_t end, NpyDtype dtype,
                          const void* data, int dim);
  // Whether the shard at `path` holds rows × dim values matching its recorded checksum (or has
  // none recorded): `kvrag embed` keeps such a file when it resumes. Otherwise false, with the
  // reason in *why (unreadable, another shape, a checksum mismatch) if the file exists.
  static bool shard_intact(const std::string& path, int64_t rows, int dim, std::string* why);

  // Shard file name for rows [begin, end).
  static std::string shard_name(int64_t begin, int64_t end);
  // Parses a shard file name; false if `name` is not one.
  static bool parse_shard_name(const std::string& name, int64_t* begin, int64_t* end);

 private:
  EmbeddingSet() = default;
  // The shard holding row `id` (which must be in range).
  size_t shard_of(int64_t id) const;

  std::string dir_;
  std::vector<std::unique_ptr<NpyMatrix>> shards_;
  std::vector<std::optional<BlockChecksum>> checksums_;  // of each shard, where recorded
  std::vector<int64_t> begins_;                          // first row of each shard, ascending
  int64_t size_ = 0;
  int dim_ = 0;
  nlohmann::json encoder_;
};

}  // namespace kvrag
