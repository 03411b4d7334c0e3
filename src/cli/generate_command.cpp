// kvrag generate --model DIR --prompt TEXT --max-new-tokens N [--temperature T] [--top-p P]
//                [--seed S] [--dtype fp32|bf16|int8] [--json]

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "checkpoint/model_folder.h"
#include "cli/commands.h"
#include "core/error.h"
#include "model/generation.h"
#include "model/llama.h"
#include "text/sentencepiece_tokenizer.h"

namespace kvrag::cli {

void add_generate_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string model, prompt, dtype = "fp32";
    int max_new_tokens = 64;
    float temperature = 0.0f, top_p = 1.0f;
    uint64_t seed = 0;
    bool json = false, no_stop = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("generate", "Continue a prompt with a LLaMA checkpoint");
  cmd->add_option("--model", args->model,
                  "checkpoint folder with config.json, safetensors and tokenizer.model")
      ->required();
  cmd->add_option("--prompt", args->prompt, "text to continue (BOS is added)");
  cmd->add_option("--max-new-tokens", args->max_new_tokens, "tokens to generate")
      ->check(kNonNegative);
  cmd->add_option("--temperature", args->temperature, "0 = greedy")->check(kNonNegative);
  cmd->add_option("--top-p", args->top_p, "nucleus sampling mass")->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("--seed", args->seed, "sampling seed");
  cmd->add_option("--dtype", args->dtype, "weights and compute: fp32, bf16, or int8 (weight-only)")
      ->check(CLI::IsMember(kModelDtypeNames));
  cmd->add_flag("--no-stop", args->no_stop, "do not stop at EOS");
  cmd->add_flag("--json", args->json,
                "print {\"ids\": [whole sequence from BOS], \"text\": continuation}");
  cmd->callback([args, &exit_code] {
    check_model_folder(args->model, {ModelFolder::kLlama}, "generate");
    SentencePieceTokenizer tokenizer(args->model + "/tokenizer.model");
    auto model = load_llama(args->model, parse_model_dtype(args->dtype));
    KVRAG_CHECK(tokenizer.vocab_size() <= model->config().vocab_size,
                "{}: tokenizer.model has {} pieces but the model's vocabulary is {}", args->model,
                tokenizer.vocab_size(), model->config().vocab_size);
    const auto prompt32 = tokenizer.encode(args->prompt, /*add_special=*/true);
    const std::vector<int64_t> prompt(prompt32.begin(), prompt32.end());

    GenerationOptions options;
    options.max_new_tokens = args->max_new_tokens;
    options.temperature = args->temperature;
    options.top_p = args->top_p;
    options.seed = args->seed;
    options.stop_at_eos = !args->no_stop;
    const auto result = generate(*model, {prompt}, options).at(0);

    std::vector<TokenId> all(prompt32);
    all.insert(all.end(), result.tokens.begin(), result.tokens.end());
    // The continuation is the decoded whole minus the decoded prompt, so a leading space that
    // belongs to the first new piece survives (decoding the new ids alone would drop it).
    const std::string whole = tokenizer.decode(all);
    const std::string head = tokenizer.decode(prompt32);
    const std::string continuation =
        whole.compare(0, head.size(), head) == 0
            ? whole.substr(head.size())
            : tokenizer.decode(std::vector<TokenId>(result.tokens.begin(), result.tokens.end()));
    if (args->json) {
      nlohmann::json j{{"ids", all}, {"text", continuation}};
      fmt::print("{}\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      fmt::print("{}{}\n", head, continuation);
    }
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
