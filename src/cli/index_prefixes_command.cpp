// kvrag index build-prefixes --index DIR --knowledge-encoder KE --llm LLM [--dtype fp16|fp32|int8]
//                            [--batch 16] [--quiet]
//
// Computes every segment's dynamic prefix once into DIR/prefixes.bin + prefixes.json, which ask,
// eval and serve then read instead of encoding (qa/prefix_store_build.h).

#include <fmt/format.h>

#include <memory>

#include "cli/commands.h"
#include "cli/number_check.h"
#include "core/units.h"
#include "qa/prefix_store_build.h"

namespace kvrag::cli {

void add_build_prefixes(CLI::App* parent, int& exit_code) {
  auto o = std::make_shared<PrefixStoreBuildOptions>();
  auto* cmd = parent->add_subcommand(
      "build-prefixes",
      "Store every segment's prefix from a knowledge encoder in DIR/prefixes.bin, so that the "
      "prefix modes answer without encoding segments (resumable)");
  cmd->add_option("--index", o->index_dir, "index folder with segments.sqlite")->required();
  cmd->add_option("--knowledge-encoder", o->knowledge_encoder_dir,
                  "knowledge encoder folder (kvrag train-prefix)")
      ->required();
  cmd->add_option("--llm", o->llm_dir, "the LLaMA folder the encoder was trained for")->required();
  cmd->add_option(
         "--dtype", o->dtype,
         "stored values: fp16 (half of fp32's bytes), fp32, or int8 (a quarter, with scales)")
      ->check(CLI::IsMember({"fp16", "fp32", "int8"}))
      ->capture_default_str();
  cmd->add_option("--batch", o->batch, "segments per encoder call")
      ->check(kPositive)
      ->capture_default_str();
  auto quiet = std::make_shared<bool>(false);
  cmd->add_flag("--quiet", *quiet, "no progress line");
  cmd->callback([o, quiet, &exit_code] {
    o->progress = !*quiet;
    const PrefixStoreBuildResult r = build_prefix_store(*o);
    const auto& h = r.header;
    if (r.already_built) {
      fmt::print(stderr,
                 "build-prefixes: {}/prefixes.bin is already this encoder's ({} segments)\n",
                 o->index_dir, format_count(h.segments));
    } else {
      fmt::print(stderr,
                 "build-prefixes: wrote {}/prefixes.bin: {} segments × {} ({} entries, {}) = {} "
                 "in {}{}\n",
                 o->index_dir, format_count(h.segments), format_bytes(h.record_bytes()), h.entries,
                 h.dtype, format_bytes(r.bytes), format_duration(r.seconds),
                 r.resumed_from > 0 ? fmt::format(" (resumed at {})", r.resumed_from) : "");
    }
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
