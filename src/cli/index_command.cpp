// kvrag index build --index DIR [--factory auto|STRING] [--max-ram 2G] [--train-size N]
//                   [--train-from DIR] [--train-only] [--nprobe N] [--ef-search N] [--rerank N]
// kvrag index merge --out DIR SHARD_DIR...
// kvrag index info --index DIR
// kvrag index build-prefixes … (index_prefixes_command.cpp)
//
// build reads DIR/embeddings (from kvrag embed) and writes DIR/dense.faiss + DIR/dense.json,
// with progress on stderr (index/index_build.h). Shards of a large corpus can be built
// separately from one trained folder (--train-only once, then --train-from it) and merged.

#include <fmt/format.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/units.h"
#include "index/index_build.h"
#include "prefix/prefix_store.h"

namespace kvrag::cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void add_build(CLI::App* parent, int& exit_code) {
  struct Args {
    std::string index, factory = "auto", max_ram = "2G", train_from;
    int64_t train_size = 0, batch = 65536;
    uint64_t seed = 1234;
    int nprobe = 0, ef_search = 0, rerank = -1;
    bool train_only = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = parent->add_subcommand("build", "Build DIR/dense.faiss from DIR/embeddings");
  cmd->add_option("--index", args->index, "index folder with embeddings/ (from kvrag embed)")
      ->required();
  cmd->add_option("--factory", args->factory,
                  "Faiss factory string (inner product), e.g. Flat, IVF4096,Flat, "
                  "IVF16384_HNSW32,PQ64np; 'auto' chooses from the corpus size and --max-ram")
      ->capture_default_str();
  cmd->add_option("--max-ram", args->max_ram,
                  "resident-memory budget for --factory auto (e.g. 2G, 512M)")
      ->capture_default_str();
  cmd->add_option("--train-size", args->train_size,
                  "vectors sampled for training (default: by index type)")
      ->check(kNonNegative);
  cmd->add_option("--train-from", args->train_from,
                  "reuse the trained index of this folder (built with --train-only) instead of "
                  "training, so that shard indexes can be merged");
  cmd->add_flag("--train-only", args->train_only,
                "train and save an empty index (a folder for --train-from)");
  cmd->add_option("--batch", args->batch, "vectors added per batch")
      ->check(kPositive)
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "seed of the training sample")->capture_default_str();
  cmd->add_option("--nprobe", args->nprobe,
                  "default IVF lists visited per query (stored in dense.json)")
      ->check(kNonNegative);
  cmd->add_option("--ef-search", args->ef_search,
                  "default HNSW search depth (stored in dense.json)")
      ->check(kNonNegative);
  cmd->add_option(
         "--rerank", args->rerank,
         "default candidates re-ranked with the float16 vectors (stored in dense.json; 0 = off)")
      ->check(CLI::Range(-1, 1 << 20));
  cmd->callback([args, &exit_code] {
    IndexBuildOptions o;
    o.factory = args->factory;
    o.max_ram_bytes = parse_bytes(args->max_ram, "--max-ram");
    o.train_size = args->train_size;
    o.train_from = args->train_from;
    o.train_only = args->train_only;
    o.add_batch = args->batch;
    o.seed = args->seed;
    o.defaults.nprobe = args->nprobe;
    o.defaults.ef_search = args->ef_search;
    o.defaults.rerank = args->rerank;
    const DenseIndexBuildResult r = build_dense_index(args->index, o);
    fmt::print(
        stderr,
        "index: wrote {}/dense.faiss ({}, {} vectors, nprobe {}, ef_search {}, rerank {}) in {}\n",
        args->index, format_bytes(r.faiss_bytes), format_count(r.size), r.defaults.nprobe,
        r.defaults.ef_search, r.defaults.rerank, format_duration(r.seconds));
    exit_code = 0;
  });
}

void add_merge(CLI::App* parent, int& exit_code) {
  struct Args {
    std::string out;
    std::vector<std::string> shards;
  };
  auto args = std::make_shared<Args>();
  auto* cmd =
      parent->add_subcommand("merge",
                             "Merge shard index folders (built with --train-from one trained "
                             "folder) into one; ids are offset by the shards' order");
  cmd->add_option("--out", args->out, "output index folder")->required();
  cmd->add_option("shards", args->shards, "shard index folders, in row order")->required();
  cmd->callback([args, &exit_code] {
    const auto t0 = std::chrono::steady_clock::now();
    merge_indexes(args->shards, args->out);
    const auto meta = nlohmann::json::parse(read_file(args->out + "/dense.json"));
    fmt::print(stderr, "index: merged {} shards into {} ({} vectors) in {}\n", args->shards.size(),
               args->out, format_count(meta.value("size", int64_t(0))),
               format_duration(seconds_since(t0)));
    exit_code = 0;
  });
}

void add_info(CLI::App* parent, int& exit_code) {
  auto index_dir = std::make_shared<std::string>();
  auto* cmd =
      parent->add_subcommand("info", "Print the dense index's parameters and statistics as JSON");
  cmd->add_option("--index", *index_dir, "index folder")->required();
  cmd->callback([index_dir, &exit_code] {
    auto info = dense_index_info(*index_dir);
    if (const auto store = PrefixStore::open(*index_dir)) {
      info["prefixes"] = store->header().to_json();
      info["prefixes"]["bytes_per_segment"] = store->header().record_bytes();
      info["prefixes"]["bytes"] = store->bytes();
    }
    std::cout << info.dump(2) << "\n";
    exit_code = 0;
  });
}

}  // namespace

void add_index_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand(
      "index", "Build, merge and inspect the dense (Faiss) index of an index folder");
  cmd->require_subcommand(1);
  add_build(cmd, exit_code);
  add_merge(cmd, exit_code);
  add_info(cmd, exit_code);
  add_build_prefixes(cmd, exit_code);
}

}  // namespace kvrag::cli
