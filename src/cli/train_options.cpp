#include "cli/train_options.h"

#include "cli/enum_option.h"

namespace kvrag::cli {

void add_optim_options(CLI::App* cmd, OptimOptions& o) {
  cmd->add_option("--lr", o.lr, "peak learning rate (AdamW)")->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "decoupled weight decay on weight matrices")
      ->capture_default_str();
  cmd->add_option(
         "--schedule", o.schedule,
         "constant | cosine (warmup, cosine decay) | plateau (ReduceLROnPlateau on validation)")
      ->capture_default_str();
  cmd->add_option("--warmup", o.warmup_steps, "linear warmup, optimizer steps")
      ->capture_default_str();
  cmd->add_option("--min-lr", o.min_lr, "floor of cosine decay and plateau reductions")
      ->capture_default_str();
  cmd->add_option("--plateau-factor", o.plateau_factor, "plateau: lr multiplier")
      ->capture_default_str();
  cmd->add_option("--plateau-patience", o.plateau_patience, "plateau: epochs without improvement")
      ->capture_default_str();
  cmd->add_option("--plateau-cooldown", o.plateau_cooldown,
                  "plateau: epochs to wait after a reduction")
      ->capture_default_str();
  cmd->add_option("--clip", o.clip_norm, "global gradient-norm clipping (0: off)")
      ->capture_default_str();
  cmd->add_option("--accumulation", o.accumulation, "micro-batches per optimizer step")
      ->capture_default_str();
  cmd->add_option("--epochs", o.epochs, "passes over the training data")->capture_default_str();
  cmd->add_option("--batch-size", o.batch_size, "examples per micro-batch")->capture_default_str();
  cmd->add_option("--seed", o.seed, "seed of initialisation and data order")->capture_default_str();
}

void add_knowledge_encoder_options(CLI::App* cmd, KnowledgeEncoderOptions& e) {
  cmd->add_option("--prefix-length", e.prefix_length,
                  "P: prefix entries per segment (readout queries)")
      ->capture_default_str();
  add_enum_option(cmd, "--readout", e.readout,
                  "queries: P learned queries read the segment; tokens: one prefix entry per "
                  "segment token (P = --max-segment-tokens), learns much faster");
  cmd->add_flag(
      "--llm-embeddings", e.llm_embeddings,
      "readout tokens: add the LLM's own embedding of each segment token to its entry, and of the "
      "token before it to its key (the LLM's and the encoder's hidden sizes must be equal)");
  add_enum_option(
      cmd, "--segment-tokenizer", e.segment_tokenizer,
      "who cuts a segment into prefix entries: encoder (its WordPiece vocabulary) or llm (the "
      "LLM's tokenizer: one entry per LLM piece, spelled into the encoder's vocabulary)");
  add_enum_option(
      cmd, "--key-position", e.key_position,
      "none: keys go to the LLM as made; answer: keys placed at the rotary position of the query "
      "that writes the answer's first token (scores independent of the question's length)");
  cmd->add_option("--max-segment-tokens", e.max_segment_tokens,
                  "encoder tokens per segment incl. [CLS]/[SEP]")
      ->capture_default_str();
  cmd->add_option("--head-std", e.head_std,
                  "initial std of the key/value heads (small: a gentle start)")
      ->capture_default_str();
}

}  // namespace kvrag::cli
