#include "index/embed_job.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/folder_lock.h"
#include "core/progress.h"
#include "index/embedding_set.h"
#include "index/npy_file.h"
#include "index/segment_store.h"
#include "text/tokenizer.h"

namespace kvrag {

namespace {

namespace fs = std::filesystem;

// encoder.json identifies the encoder; a folder holds vectors of one encoder only. Vectors of
// another encoder (or chunk grid) are an Error, or removed with `overwrite`.
void claim_folder(const std::string& dir, const nlohmann::json& info,
                  const std::string& encoder_dir, int64_t chunk, bool overwrite) {
  const std::string info_path = dir + "/encoder.json";
  if (fs::exists(info_path)) {
    nlohmann::json old;
    try {
      old = nlohmann::json::parse(read_file(info_path));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", info_path, e.what());
    }
    const bool same = old.value("fingerprint", "") == info["fingerprint"] &&
                      old.value("chunk", int64_t{0}) == chunk;
    if (!same && !overwrite) {
      fail(
          "{} holds vectors of encoder {} (fingerprint {}, chunk {}); this run uses {} "
          "(fingerprint {}, chunk {}). Use another --index folder or --overwrite",
          dir, old.value("path", "?"), old.value("fingerprint", "?"),
          old.value("chunk", int64_t{0}), encoder_dir, info["fingerprint"].get<std::string>(),
          chunk);
    }
    if (!same) fs::remove_all(dir);
  }
  fs::create_directories(dir);
  write_file_atomic(info_path, info.dump(2) + "\n");
}

// Whether `path` already holds the rows' vectors (an earlier run wrote it, and it has not changed
// since); a file that exists but is unusable is encoded again, with a note.
bool chunk_done(const std::string& path, int64_t rows, int dim, bool progress) {
  std::string why;
  if (EmbeddingSet::shard_intact(path, rows, dim, &why)) return true;
  if (progress && !why.empty()) fmt::print(stderr, "embed: {}: embedding it again\n", why);
  return false;
}

// The store's segments were measured in tokens of the tokenizer recorded in its meta
// "segmenter"; the encoder must read them with the same one (unless `force`).
void check_tokenizer(const std::string& index_dir, const std::string& encoder_dir,
                     const Embedder& embedder, const nlohmann::json& segmenter, bool force,
                     bool progress) {
  const std::string recorded = segmenter.value("tokenizer", "");
  if (recorded.empty()) return;  // a store from before tokenizers were recorded
  const std::string ours = tokenizer_id(embedder.tokenizer_file());
  if (ours == recorded) return;
  const std::string file = segmenter.value("tokenizer_file", "");
  const std::string message =
      fmt::format("{}: segments were cut with tokenizer {} but the encoder {} uses {} (id {})",
                  index_dir, file.empty() ? recorded : fmt::format("{} (id {})", file, recorded),
                  encoder_dir, embedder.tokenizer_file(), ours);
  KVRAG_CHECK(force,
              "{}; segment again with the encoder's tokenizer, or pass --force to embed anyway",
              message);
  if (progress) fmt::print(stderr, "embed: --force: {}\n", message);
}

}  // namespace

EmbedJobResult embed_segments(const std::string& index_dir, const std::string& encoder_dir,
                              const EmbedJobOptions& options) {
  KVRAG_CHECK(options.chunk > 0, "embed: the chunk size must be positive, got {}", options.chunk);
  EmbedJobResult r;
  const auto store = SegmentStore::open(index_dir + "/segments.sqlite");
  r.total = store->size();
  KVRAG_CHECK(r.total > 0, "{}: no segments (run kvrag segment first)", store->path());
  r.shard = resolve_shard(options.shard);
  r.begin = r.shard.begin(r.total);
  r.end = r.shard.end(r.total);
  // Shards write disjoint files: they share the folder, each holds its own shard.
  const FolderLock folder(index_dir, LockMode::kShared, "kvrag embed");
  const FolderLock shard(index_dir, LockMode::kExclusive,
                         fmt::format("kvrag embed --shard {}/{}", r.shard.index, r.shard.count),
                         fmt::format(".kvrag.lock.embed-{}-of-{}", r.shard.index, r.shard.count));

  const auto embedder = Embedder::load(encoder_dir, options.encoder);
  r.fingerprint = embedder->fingerprint();
  r.dim = embedder->dim();
  r.max_length = embedder->max_length();
  KVRAG_CHECK(
      store->meta("complete").value_or("") == "1",
      "{}: segmenting did not finish; rerun kvrag segment with the same arguments to complete it",
      store->path());
  nlohmann::json segmenter = nlohmann::json::object();
  if (const auto text = store->meta("segmenter")) {
    try {
      segmenter = nlohmann::json::parse(*text);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: unreadable meta \"segmenter\": {}", store->path(), e.what());
    }
  }
  const bool prepend_title = segmenter.value("prepend_title", true);
  check_tokenizer(index_dir, encoder_dir, *embedder, segmenter, options.force, options.progress);

  r.dir = index_dir + "/embeddings";
  auto info = embedder->info();
  info["chunk"] = options.chunk;
  info["prepend_title"] = prepend_title;
  claim_folder(r.dir, info, encoder_dir, options.chunk, options.overwrite);

  if (options.progress) {
    fmt::print(stderr, "embed: segments [{}, {}) of {} ({}), encoder {} ({}, dim {}, {})\n",
               r.begin, r.end, r.total, r.shard.source, encoder_dir, r.fingerprint, r.dim,
               options.encoder.dtype);
  }
  ProgressOptions progress_options;
  progress_options.label = "embed";
  progress_options.unit = "segments";
  progress_options.total_items = r.end - r.begin;
  progress_options.enabled = options.progress;
  ProgressReporter progress(progress_options);
  int64_t done_rows = 0;
  std::vector<float> vectors;  // [rows × dim]
  std::vector<uint16_t> halves;
  // Chunks of the fixed grid (multiples of `chunk`), cut at the shard's ends.
  for (int64_t lo = r.begin; lo < r.end;) {
    const int64_t hi = std::min(r.end, (lo / options.chunk + 1) * options.chunk);
    const std::string path = r.dir + "/" + EmbeddingSet::shard_name(lo, hi);
    if (chunk_done(path, hi - lo, r.dim, options.progress)) {
      r.skipped += hi - lo;
    } else {
      std::vector<int64_t> ids(hi - lo);
      for (int64_t i = lo; i < hi; ++i) ids[i - lo] = i;
      const auto segments = store->get_many(ids);
      std::vector<std::string> texts;
      texts.reserve(segments.size());
      for (const auto& s : segments) texts.push_back(encoder_input(s, prepend_title));
      vectors.resize(texts.size() * r.dim);
      int64_t truncated = 0;
      embedder->encode(texts, vectors.data(), &truncated);
      r.truncated += truncated;
      halves.resize(vectors.size());
      for (size_t i = 0; i < vectors.size(); ++i) halves[i] = float_to_half(vectors[i]);
      EmbeddingSet::write_shard(r.dir, lo, hi, NpyDtype::kF16, halves.data(), r.dim);
    }
    done_rows += hi - lo;
    progress.update(0, done_rows);
    lo = hi;
  }
  progress.finish(0, done_rows);
  if (options.progress && r.skipped > 0) {
    fmt::print(stderr, "embed: {} segments were already embedded (resumed)\n", r.skipped);
  }
  if (options.progress && r.truncated > 0) {
    fmt::print(stderr, "embed: {} segments were longer than {} tokens and truncated\n", r.truncated,
               r.max_length);
  }
  // checks the files tile [0, total)
  if (r.shard.count == 1) r.vectors = EmbeddingSet::open(r.dir, r.total)->size();
  return r;
}

}  // namespace kvrag
