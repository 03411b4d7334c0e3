// Checksums of embedding shards, so that a shard changed after `kvrag embed` wrote it (a bit
// flipped on disk, a copy cut short, a file from another run put in its place) is an Error
// instead of silently wrong vectors.
//
// Beside each shard DIR/embeddings/emb-B-E.npy, `kvrag embed` writes the sidecar
// emb-B-E.npy.sum:
//
//   {"format": "kvrag-block-checksum-1", "hash": "fnv1a64-words", "block_bytes": 65536,
//    "file_bytes": 25165952, "blocks": ["3f0c…", …]}
//
// one hash per 64 KiB block of the whole file (header and data): word-wise FNV-1a
// (Fnv1a64::add_words, core/fingerprint.h: 8 bytes per step, several GB/s), 16 hex digits each.
// Per-block values let a reader check any part of a file without reading the rest (the sampled
// check at retriever open, EmbeddingSet::verify) and say where a file changed. One sidecar per
// shard rather than one manifest for the folder: shards are written by concurrent processes
// (--shard i/n, MPI), each owning only its own files.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/fingerprint.h"

namespace kvrag {

struct BlockChecksum {
  static constexpr uint64_t kBlockBytes = 64 << 10;

  uint64_t block_bytes = kBlockBytes;  // a multiple of 8
  uint64_t file_bytes = 0;
  std::vector<uint64_t> blocks;  // ceil(file_bytes / block_bytes) hashes

  // Bytes [begin, end) of the file that block `i` covers.
  uint64_t block_begin(size_t i) const { return uint64_t(i) * block_bytes; }
  uint64_t block_end(size_t i) const { return std::min(file_bytes, block_begin(i) + block_bytes); }
};

// Hashes bytes given in pieces of any size into a BlockChecksum (the writer's side: fed the
// bytes as they are written, so nothing is read back).
class BlockChecksummer {
 public:
  void add(const void* data, size_t n);
  BlockChecksum finish();  // once; the checksummer is spent afterwards

 private:
  void flush();  // hashes the buffered block

  BlockChecksum sum_;
  std::vector<unsigned char> buffer_;  // the current block's bytes, fewer than block_bytes
};

// The sidecar of `file`: file + ".sum".
std::string checksum_path(const std::string& file);

// Writes checksum_path(file) atomically.
void write_checksum(const std::string& file, const BlockChecksum& sum);

// The checksum recorded for `file`; nullopt if it has no sidecar (files written before kvrag
// recorded checksums). Error naming the sidecar if it is unreadable or malformed.
std::optional<BlockChecksum> read_checksum(const std::string& file);

// Reads bytes [offset, offset + n) of the file being checked into out.
using ReadBytes = std::function<void(uint64_t offset, size_t n, void* out)>;

// Checks the blocks `which` (indexes into sum.blocks) of `file`, `file_bytes` long and read
// through `read`, against `sum`. Error naming the file at the first difference, in size or in a
// block: "FILE: checksum mismatch in bytes [A, B) (recorded H1, found H2): the file changed after
// `kvrag embed` wrote it; rerun kvrag embed to re-embed this shard" (without the part after the
// parenthesis unless `advise`: for the embedding job itself). Returns the bytes read.
uint64_t verify_blocks(const std::string& file, uint64_t file_bytes, const BlockChecksum& sum,
                       const std::vector<size_t>& which, const ReadBytes& read, bool advise = true);

}  // namespace kvrag
