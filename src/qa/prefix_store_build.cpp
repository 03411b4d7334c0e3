#include "qa/prefix_store_build.h"

#include <torch/torch.h>

#include <unistd.h>
#include <chrono>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/folder_lock.h"
#include "core/progress.h"
#include "index/segment_store.h"
#include "prefix/prefix_pipeline.h"

namespace kvrag {

namespace fs = std::filesystem;

namespace {

// The header of the store in `path` (prefixes.json or the partial's record), or nullopt where
// there is none or it cannot be read (a partial build of another format starts over).
std::optional<nlohmann::json> read_json(const std::string& path) {
  if (!fs::exists(path)) return std::nullopt;
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

void write_synced(std::FILE* f, const std::string& bytes, const std::string& path) {
  KVRAG_CHECK(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() &&
                  std::fflush(f) == 0 && ::fsync(fileno(f)) == 0,
              "{}: write failed (disk full?)", path);
}

}  // namespace

PrefixStoreBuildResult build_prefix_store(const PrefixStoreBuildOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  check_prefix_store_dtype(o.dtype, "prefix store");
  KVRAG_CHECK(o.batch >= 1, "prefix store: batch {} (at least 1)", o.batch);
  const std::string dir = o.index_dir;
  const std::string segments_path = dir + "/segments.sqlite";
  KVRAG_CHECK(fs::exists(segments_path), "index folder {} has no segments.sqlite (kvrag segment)",
              dir);
  FolderLock lock(dir, LockMode::kExclusive, "kvrag index build-prefixes");
  const auto store = SegmentStore::open(segments_path);
  torch::NoGradGuard no_grad;
  // The LLM gives the tokenizer (segments cut in its pieces) and its fingerprint; its weights are
  // not used, so it loads in bf16 (mapped where the checkpoint is bf16) rather than fp32.
  PrefixPipeline pipeline(o.llm_dir, torch::kBFloat16);
  pipeline.load_encoder(o.knowledge_encoder_dir);

  PrefixStoreBuildResult r;
  PrefixStoreHeader& h = r.header;
  h.dtype = o.dtype;
  h.segments = store->size();
  h.layers = pipeline.llm_config().num_hidden_layers;
  h.kv_heads = pipeline.llm_config().num_key_value_heads;
  h.head_dim = pipeline.llm_config().head_dim;
  h.entries = pipeline.prefix_entries(1);
  h.encoder_fingerprint = pipeline.encoder_fingerprint();
  h.llm_fingerprint = pipeline.llm_fingerprint();
  const int64_t record = h.record_bytes();
  r.bytes = h.segments * record;

  if (const auto done = read_json(prefix_store_json(dir));
      done && fs::exists(prefix_store_bin(dir))) {
    try {
      if (PrefixStoreHeader::from_json(*done, prefix_store_json(dir)) == h) {
        r.already_built = true;
        return r;
      }
    } catch (const Error&) {  // malformed: rebuilt below
    }
  }

  // Resume a partial build of this very store; anything else starts over.
  const std::string partial_bin = prefix_store_partial_bin(dir);
  const std::string partial_json = prefix_store_partial_json(dir);
  int64_t next = 0;
  if (const auto p = read_json(partial_json);
      p && p->contains("header") && p->contains("done") && fs::exists(partial_bin)) {
    try {
      if (PrefixStoreHeader::from_json(p->at("header"), partial_json) == h) {
        const int64_t on_disk = static_cast<int64_t>(fs::file_size(partial_bin)) / record;
        next = std::clamp<int64_t>(p->at("done").get<int64_t>(), 0, std::min(on_disk, h.segments));
      }
    } catch (const std::exception&) {
      next = 0;
    }
  }
  if (next == 0) {
    write_file_atomic(partial_bin, "");  // a fresh start: an empty file
  } else {
    fs::resize_file(partial_bin, static_cast<uintmax_t>(next * record));
  }
  r.resumed_from = next;

  std::FILE* f = std::fopen(partial_bin.c_str(), "ab");
  KVRAG_CHECK(f != nullptr, "{}: cannot open for writing", partial_bin);
  ProgressOptions po;
  po.label = "build-prefixes";
  po.unit = "segments";
  po.total_items = h.segments;
  po.start_items = next;
  po.enabled = o.progress;
  ProgressReporter progress(po);
  try {
    std::string bytes;
    while (next < h.segments) {
      const int64_t end = std::min(h.segments, next + o.batch);
      std::vector<int64_t> ids;
      for (int64_t i = next; i < end; ++i) ids.push_back(i);
      std::vector<KnowledgeTokens> tokens;
      for (const auto& s : store->get_many(ids))
        tokens.push_back(pipeline.segment_tokens({s.title, s.text}));
      bytes.clear();
      append_prefix_records(pipeline.encode_segments(tokens), h, bytes);
      write_synced(f, bytes, partial_bin);
      next = end;
      write_file_atomic(partial_json,
                        nlohmann::json{{"header", h.to_json()}, {"done", next}}.dump());
      progress.update(0, next);
    }
  } catch (...) {
    std::fclose(f);
    throw;
  }
  std::fclose(f);
  progress.finish(0, next);
  // An older store (another encoder's) goes first: a crash between the two steps below must not
  // leave its header describing these records.
  fs::remove(prefix_store_json(dir));
  fs::rename(partial_bin, prefix_store_bin(dir));
  write_file_atomic(prefix_store_json(dir), h.to_json().dump(2) + "\n");
  fs::remove(partial_json);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace kvrag
