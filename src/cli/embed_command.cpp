// kvrag embed --index DIR --encoder ENC [--dtype bf16|fp32] [--batch-tokens N] [--chunk N]
//             [--shard i/n] [--max-length N] [--overwrite]
//
// Encodes every segment of DIR/segments.sqlite into float16 vectors, DIR/embeddings/
// emb-<begin>-<end>.npy, one file per chunk of the fixed chunk grid. Each chunk is written
// atomically, so an interrupted run (even kill -9) resumes at the first missing chunk, and the
// result is identical to an uninterrupted run (a chunk's batches depend only on its rows).
// --shard i/n (or the MPI launcher's rank/size) takes one contiguous part of the rows, so
// processes or machines split the work; the shards' files tile the id range.

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "index/embedder.h"
#include "index/embedding_set.h"
#include "index/npy_file.h"
#include "index/segment_store.h"

namespace kvrag::cli {
namespace {

namespace fs = std::filesystem;

struct ShardSpec {
  int index = 0, count = 1;
  std::string source = "single process";
};

// "i/n", else the MPI environment (Open MPI, MPICH/PMI, PMIx), else 0/1.
ShardSpec resolve_shard(const std::string& flag) {
  ShardSpec s;
  if (!flag.empty()) {
    const auto slash = flag.find('/');
    try {
      KVRAG_CHECK(slash != std::string::npos, "");
      s.index = std::stoi(flag.substr(0, slash));
      s.count = std::stoi(flag.substr(slash + 1));
    } catch (const std::exception&) {
      fail("--shard must look like i/n (e.g. 0/4), got '{}'", flag);
    }
    s.source = "--shard";
  } else {
    const std::pair<const char*, const char*> launchers[] = {
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}, {"PMIX_RANK", "PMIX_SIZE"}, {"PMI_RANK", "PMI_SIZE"}};
    for (const auto& [rank, size] : launchers) {
      const char* r = std::getenv(rank);
      const char* n = std::getenv(size);
      if (r != nullptr && n != nullptr) {
        s.index = std::atoi(r);
        s.count = std::atoi(n);
        s.source = fmt::format("MPI ({}/{})", rank, size);
        break;
      }
    }
  }
  KVRAG_CHECK(s.count >= 1 && s.index >= 0 && s.index < s.count, "shard {}/{} from {}: need 0 <= i < n", s.index,
              s.count, s.source);
  return s;
}

// Bits of IEEE half for each float.
void to_half(const std::vector<float>& in, std::vector<uint16_t>& out) {
  out.resize(in.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = float_to_half(in[i]);
}

}  // namespace

void add_embed_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string index, encoder, dtype = "bf16", shard;
    int64_t batch_tokens = 8192, chunk = 16384;
    int max_length = 0;
    bool overwrite = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("embed", "Encode every segment of an index folder into float16 vectors (resumable, shardable)");
  cmd->add_option("--index", args->index, "index folder with segments.sqlite (from kvrag segment)")->required();
  cmd->add_option("--encoder", args->encoder, "retriever encoder folder (BERT checkpoint + vocab.txt)")->required();
  cmd->add_option("--dtype", args->dtype, "compute dtype")->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--batch-tokens", args->batch_tokens, "padded tokens per forward batch")->check(CLI::PositiveNumber);
  cmd->add_option("--chunk", args->chunk, "segments per output file (the unit of resumption)")->check(CLI::PositiveNumber);
  cmd->add_option("--max-length", args->max_length, "truncate segments to this many tokens (default: the model's limit)");
  cmd->add_option("--shard", args->shard, "i/n: embed the i-th of n parts (default: from MPI, else all)");
  cmd->add_flag("--overwrite", args->overwrite, "discard embeddings made by another encoder");
  cmd->callback([args, &exit_code] {
    const auto store = SegmentStore::open(args->index + "/segments.sqlite");
    const int64_t total = store->size();
    KVRAG_CHECK(total > 0, "{}: no segments (run kvrag segment first)", store->path());
    const auto shard = resolve_shard(args->shard);
    const int64_t begin = total * shard.index / shard.count, end = total * (shard.index + 1) / shard.count;

    EmbedderOptions options;
    options.dtype = args->dtype;
    options.max_length = args->max_length;
    options.batch_tokens = args->batch_tokens;
    const auto embedder = Embedder::load(args->encoder, options);
    KVRAG_CHECK(store->meta("complete").value_or("") == "1",
                "{}: segmenting did not finish; rerun kvrag segment with the same arguments to complete it", store->path());
    bool prepend_title = true;
    if (const auto segmenter = store->meta("segmenter")) {
      prepend_title = nlohmann::json::parse(*segmenter).value("prepend_title", true);
    }

    // encoder.json identifies the encoder; a folder holds vectors of one encoder only.
    const std::string dir = args->index + "/embeddings";
    auto info = embedder->info();
    info["chunk"] = args->chunk;
    info["prepend_title"] = prepend_title;
    const std::string info_path = dir + "/encoder.json";
    if (fs::exists(info_path)) {
      nlohmann::json old;
      try {
        old = nlohmann::json::parse(read_file(info_path));
      } catch (const nlohmann::json::exception& e) {
        fail("{}: invalid JSON: {}", info_path, e.what());
      }
      const bool same = old.value("fingerprint", "") == info["fingerprint"] && old.value("chunk", int64_t{0}) == args->chunk;
      if (!same && !args->overwrite) {
        fail("{} holds vectors of encoder {} (fingerprint {}, chunk {}); this run uses {} (fingerprint {}, chunk {}). "
             "Use another --index folder or --overwrite",
             dir, old.value("path", "?"), old.value("fingerprint", "?"), old.value("chunk", int64_t{0}),
             args->encoder, info["fingerprint"].get<std::string>(), args->chunk);
      }
      if (!same) fs::remove_all(dir);
    }
    fs::create_directories(dir);
    write_file_atomic(info_path, info.dump(2) + "\n");

    fmt::print(stderr, "embed: segments [{}, {}) of {} ({}), encoder {} ({}, dim {}, {})\n", begin, end, total,
               shard.source, args->encoder, embedder->fingerprint(), embedder->dim(), args->dtype);
    ProgressOptions progress_options;
    progress_options.label = "embed";
    progress_options.unit = "segments";
    progress_options.total_items = end - begin;
    ProgressReporter progress(progress_options);
    int64_t done_rows = 0;
    std::vector<float> vectors;
    std::vector<uint16_t> halves;
    int64_t skipped = 0, truncated_total = 0;
    for (int64_t lo = begin; lo < end;) {
      const int64_t hi = std::min(end, (lo / args->chunk + 1) * args->chunk);
      const std::string path = dir + "/" + EmbeddingSet::shard_name(lo, hi);
      bool done = false;
      if (fs::exists(path)) {
        try {
          const auto m = NpyMatrix::open(path);
          done = m->rows() == hi - lo && m->cols() == embedder->dim();
        } catch (const Error&) {
          done = false;  // unreadable: encode it again
        }
      }
      if (done) {
        skipped += hi - lo;
      } else {
        std::vector<int64_t> ids(hi - lo);
        for (int64_t i = lo; i < hi; ++i) ids[i - lo] = i;
        const auto segments = store->get_many(ids);
        std::vector<std::string> texts;
        texts.reserve(segments.size());
        for (const auto& s : segments) texts.push_back(encoder_input(s, prepend_title));
        vectors.resize(texts.size() * embedder->dim());
        int64_t truncated = 0;
        embedder->encode(texts, vectors.data(), &truncated);
        truncated_total += truncated;
        to_half(vectors, halves);
        write_npy(path, NpyDtype::kF16, halves.data(), hi - lo, embedder->dim());
      }
      done_rows += hi - lo;
      progress.update(0, done_rows);
      lo = hi;
    }
    progress.finish(0, done_rows);
    if (skipped > 0) fmt::print(stderr, "embed: {} segments were already embedded (resumed)\n", skipped);
    if (truncated_total > 0) {
      fmt::print(stderr, "embed: {} segments were longer than {} tokens and truncated\n", truncated_total,
                 embedder->max_length());
    }
    if (shard.count == 1) {
      const auto set = EmbeddingSet::open(dir, total);  // verifies the files tile [0, total)
      fmt::print(stderr, "embed: {} vectors of dim {} in {}\n", set->size(), set->dim(), dir);
    }
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
