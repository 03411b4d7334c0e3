// kvrag train-tokenizer --input text.txt --out tokenizer.model [--vocab-size 2000] [--model-type
// bpe]

#include <fmt/format.h>

#include "cli/commands.h"
#include "text/sentencepiece_tokenizer.h"
#include "text/sentencepiece_trainer.h"

namespace kvrag::cli {

void add_train_tokenizer_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<SentencePieceTrainOptions>();
  auto input = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "train-tokenizer",
      "Train a LLaMA-style SentencePiece tokenizer.model on a text file (for train-lm)");
  cmd->add_option("--input", *input, "training text, one sentence or passage per line")->required();
  cmd->add_option("--out", *out, "tokenizer.model to write (atomically)")->required();
  cmd->add_option("--vocab-size", o->vocab_size,
                  "pieces (fewer when the text does not support them)")
      ->capture_default_str()
      ->check(CLI::Range(300, 1000000));
  cmd->add_option("--model-type", o->model_type, "bpe | unigram")
      ->capture_default_str()
      ->check(CLI::IsMember({"bpe", "unigram"}));
  cmd->callback([o, input, out, &exit_code] {
    train_sentencepiece(*input, *out, *o);
    const SentencePieceTokenizer tokenizer(*out);
    fmt::print(
        "{}: {} pieces (unk 0, bos 1, eos 2, pad 3; byte fallback, digits split, no dummy "
        "prefix)\n",
        *out, tokenizer.vocab_size());
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
