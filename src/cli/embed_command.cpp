// kvrag embed --index DIR --encoder ENC [--dtype bf16|fp32|int8] [--batch-tokens N] [--chunk N]
//             [--shard i/n] [--max-length N] [--overwrite] [--force]
//
// Encodes every segment of DIR/segments.sqlite into float16 vectors in DIR/embeddings/: an
// interrupted run resumes at the first missing chunk, --shard i/n (or the MPI launcher's
// rank/size) takes one contiguous part of the rows. An encoder whose tokenizer is not the one
// the segments were cut with is refused unless --force. The job is index/embed_job.h.

#include <fmt/format.h>

#include <memory>

#include "cli/commands.h"
#include "index/embed_job.h"
#include "model/model_dtype_names.h"

namespace kvrag::cli {

void add_embed_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string index, encoder, dtype = "bf16", shard;
    int64_t batch_tokens = 8192, chunk = 16384;
    int max_length = 0;
    bool overwrite = false, force = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "embed",
      "Encode every segment of an index folder into float16 vectors (resumable, shardable)");
  cmd->add_option("--index", args->index, "index folder with segments.sqlite (from kvrag segment)")
      ->required();
  cmd->add_option("--encoder", args->encoder,
                  "retriever encoder folder (BERT checkpoint + vocab.txt)")
      ->required();
  cmd->add_option("--dtype", args->dtype,
                  "encoder dtype: bf16, fp32, or int8 (weight-only, fp32 compute)")
      ->check(CLI::IsMember(kModelDtypeNames));
  cmd->add_option("--batch-tokens", args->batch_tokens, "padded tokens per forward batch")
      ->check(kPositive);
  cmd->add_option("--chunk", args->chunk, "segments per output file (the unit of resumption)")
      ->check(kPositive);
  cmd->add_option("--max-length", args->max_length,
                  "truncate segments to this many tokens (default: the model's limit)")
      ->check(kNonNegative);
  cmd->add_option("--shard", args->shard,
                  "i/n: embed the i-th of n parts (default: from MPI, else all)");
  cmd->add_flag("--overwrite", args->overwrite, "discard embeddings made by another encoder");
  cmd->add_flag("--force", args->force,
                "embed even if the encoder's tokenizer is not the one the segments were cut with");
  cmd->callback([args, &exit_code] {
    EmbedJobOptions o;
    o.encoder.dtype = args->dtype;
    o.encoder.max_length = args->max_length;
    o.encoder.batch_tokens = args->batch_tokens;
    o.chunk = args->chunk;
    o.shard = args->shard;
    o.overwrite = args->overwrite;
    o.force = args->force;
    const EmbedJobResult r = embed_segments(args->index, args->encoder, o);
    if (r.shard.count == 1)
      fmt::print(stderr, "embed: {} vectors of dim {} in {}\n", r.vectors, r.dim, r.dir);
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
