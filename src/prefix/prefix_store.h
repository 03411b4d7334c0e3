// The prefix store: every segment's dynamic prefix computed once, at index time, by a knowledge
// encoder, so that answering in prefix mode reads it instead of running the encoder. Possible
// because the encoder sees only the segment (never the question): a segment's keys and values are
// the same for every question that retrieves it. They are stored as the encoder makes them,
// before place_for_answer rotates the keys for a question's prompt (model/knowledge_encoder.h).
//
// Files in the index folder (kvrag index build-prefixes writes them, qa/prefix_store_build.h):
//   DIR/prefixes.bin   one record per segment, segment id i at byte i · record_bytes: per LLM
//                      layer its keys then its values, each [kvH, P, hd] row-major, in `dtype`
//                      (int8: keys [kvH, P, hd] int8, their scales [kvH, hd] fp32, values
//                      [kvH, P, hd] int8, their scales [kvH, P] fp32)
//   DIR/prefixes.json  {"format": "kvrag-prefix-store-1", "dtype": "fp16" | "fp32" | "int8",
//                       "segments": N, "layers": L, "kv_heads": kvH, "entries": P,
//                       "head_dim": hd, "encoder_fingerprint", "llm_fingerprint"}
// written last, so that a folder with prefixes.json has a complete prefixes.bin. While a build
// runs (and after an interruption) the records grow in DIR/prefixes.partial.bin, with
// DIR/prefixes.partial.json recording the header and how many are done.
//
// dtype: fp16 halves the store against fp32 (the encoder's output is fp32); keys and values of a
// trained encoder are a few units at most, far inside fp16's range, where it keeps 11 bits of
// mantissa, as many as the answers need (tests/qa/test_prefix_store.cpp compares answers).
// int8 quarters it again (KIVI's split, as outliers in keys sit in channels and in values in
// tokens): keys rounded per channel (one scale per head and dimension over the segment's
// entries), values per entry (one per head and entry over its dimensions), scale = max|x| / 127,
// so each number is within scale / 2 of what the encoder made (tested), and a zero (padding)
// entry stays exactly zero.
//
// Size: L · 2 · kvH · P · hd values a segment: the demo's encoder 130 entries × 2 layers × 128
// values × 2 = 133 KB in fp16 (72 KB in int8); a 1.1B LLaMA (22 layers, 256 kv values) with
// 288-token segments 6.5 MB in fp16, so a store of every segment suits small and medium corpora
// only (a bounded cache serves the rest: prefix/prefix_cache.h).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/llama.h"

namespace kvrag {

// What a store holds and for which models.
struct PrefixStoreHeader {
  std::string dtype = "fp16";  // fp16 | fp32 | int8
  int64_t segments = 0, layers = 0, kv_heads = 0, entries = 0, head_dim = 0;
  std::string encoder_fingerprint, llm_fingerprint;

  int64_t record_bytes() const {
    const int64_t values = kv_heads * entries * head_dim;  // of one layer's keys (or values)
    if (dtype == "int8") return layers * (2 * values + 4 * kv_heads * (head_dim + entries));
    return layers * 2 * values * (dtype == "fp16" ? 2 : 4);
  }
  nlohmann::json to_json() const;
  // Error naming `where` for a missing or malformed field.
  static PrefixStoreHeader from_json(const nlohmann::json& j, const std::string& where);
  bool operator==(const PrefixStoreHeader& o) const { return to_json() == o.to_json(); }
};

// Error (prefixed by `where`) unless `dtype` is one a store holds: fp16, fp32 or int8.
void check_prefix_store_dtype(const std::string& dtype, const std::string& where);

// The file names above, in index folder DIR.
std::string prefix_store_bin(const std::string& dir);
std::string prefix_store_json(const std::string& dir);
std::string prefix_store_partial_bin(const std::string& dir);
std::string prefix_store_partial_json(const std::string& dir);

// `prefix` (keys/values [B, kvH, P, hd] per layer, any float dtype) as B records of `header`'s
// layout, appended to `out`. Error on a shape that is not the header's.
void append_prefix_records(const KVPrefix& prefix, const PrefixStoreHeader& header,
                           std::string& out);

class PrefixStore {
 public:
  // The complete store of index folder DIR (memory-mapped), or nullptr where DIR has no
  // prefixes.json. Error naming the file for a malformed header or a prefixes.bin whose size is
  // not segments × record_bytes.
  static std::unique_ptr<PrefixStore> open(const std::string& dir);
  ~PrefixStore();
  PrefixStore(const PrefixStore&) = delete;
  PrefixStore& operator=(const PrefixStore&) = delete;

  const PrefixStoreHeader& header() const { return header_; }
  const std::string& dir() const { return dir_; }
  int64_t bytes() const { return header_.segments * header_.record_bytes(); }

  // The stored prefixes of `segment_ids` (one row each, in order): keys/values
  // [B, kvH, P, hd] fp32 per layer, as the encoder made them. Error naming the store for an id
  // outside [0, segments).
  KVPrefix get(const std::vector<int64_t>& segment_ids) const;

 private:
  PrefixStore() = default;
  PrefixStoreHeader header_;
  std::string dir_;
  const char* data_ = nullptr;  // the mapped prefixes.bin
  size_t size_ = 0;
};

}  // namespace kvrag
