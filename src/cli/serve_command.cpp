// kvrag serve --workspace DIR [--host 127.0.0.1] [--port 8080] [--api-key KEY]
// kvrag serve --llm DIR [--index DIR] [--knowledge-encoder DIR] [...]
//
// Loads the models once and serves the JSON API and the web page (serve/server.h) until
// Ctrl-C / SIGTERM, which finishes the requests in flight.

#include <fmt/format.h>

#include <algorithm>
#include <string>

#include "cli/answerer_options.h"
#include "cli/commands.h"
#include "cli/enum_option.h"
#include "cli/server_options.h"
#include "core/error.h"
#include "model/model_dtype_names.h"
#include "qa/answer_defaults.h"
#include "serve/answerer_service.h"
#include "serve/server.h"

namespace kvrag::cli {
void add_serve_command(CLI::App& app, int& exit_code) {
  struct Args {
    AnswerSources sources;
    std::string mode;  // "" and top_k 0: the defaults (qa/answer_defaults.h)
    int top_k = 0;
    AnswererOptions answerer;
    ServerOptions server;
  };
  auto args = std::make_shared<Args>();
  args->answerer.citations = true;  // each answer's evidence cited by attention (web page)
  auto* cmd = app.add_subcommand("serve", "Answer questions over HTTP: JSON API and a web page");
  auto& src = args->sources;
  cmd->add_option("--workspace", src.workspace,
                  "a `kvrag demo` workspace: its llm/, index/, knowledge_encoder/ and the defaults "
                  "it was evaluated with (answer_defaults.json); the options below override each");
  cmd->add_option("--llm", src.llm, "LLaMA checkpoint folder with its tokenizer.model");
  cmd->add_option("--index", src.index, "index folder (segments.sqlite, embeddings/, dense index)");
  cmd->add_option("--knowledge-encoder", src.knowledge_encoder,
                  "knowledge encoder folder (the prefix modes)");
  add_enum_name_option<RetrieverMode>(
      cmd, "--retriever", src.retriever,
      "retriever for answering: dense, bm25 or hybrid; " + kRetrieverDefault);
  add_enum_name_option<AnswerMode>(cmd, "--mode", args->mode,
                                   "answer mode of requests that name none; " + kModeDefault);
  cmd->add_option(
         "--top-k", args->top_k,
         "top_k of requests that give none (one that fits every mode offered); " + kTopKDefault)
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--encoder", args->answerer.retriever.encoder,
                  "question encoder (default: the index's)");
  cmd->add_option("--dtype", args->answerer.dtype,
                  "LLM dtype: fp32, bf16, or int8 (weight-only, fp32 compute)")
      ->capture_default_str()
      ->check(CLI::IsMember(kModelDtypeNames));
  cmd->add_option("--max-new-tokens", args->answerer.max_new_tokens,
                  "answer length limit in tokens")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  add_decoding_options(cmd, args->sources, args->answerer);
  add_threshold_options(cmd, args->answerer);
  add_server_options(cmd, args->server);

  cmd->callback([args, &exit_code] {
    check_limits(args->server.http);  // before minutes of loading
    const AnswerSetup setup = resolve_answer_setup(args->sources, args->answerer);
    const AnswererOptions& o = setup.options;
    fmt::print(stderr, "kvrag serve: loading {}{}{}\n", o.llm_dir,
               o.index_dir.empty() ? "" : ", " + o.index_dir,
               o.knowledge_encoder_dir.empty() ? "" : ", " + o.knowledge_encoder_dir);
    auto service = AnswererService::open(o);
    if (const auto& status = service->answerer().prefix_store_status(); !status.empty())
      fmt::print(stderr, "kvrag serve: {}\n", status);
    // The defaults of ask and eval; top_k one that fits every mode the server offers.
    const AnswerDefaults d = answer_defaults(service->answerer(), setup, service->modes());
    service->set_default_mode(args->mode.empty() ? d.mode : parse_answer_mode(args->mode));

    ServerOptions so = args->server;
    so.default_top_k = args->top_k > 0 ? args->top_k : std::min(d.top_k, so.max_top_k);
    Server server(*service, so);
    server.bind();
    std::string modes;
    for (auto m : service->modes()) modes += (modes.empty() ? "" : ", ") + to_string(m);
    const HttpLimits& http = args->server.http;
    if (!is_loopback_host(http.host)) {
      fmt::print(stderr, "kvrag serve: listening on {}, reachable from other machines ({})\n",
                 http.host, http.api_key.empty() ? "--insecure: anyone may ask" : "API key set");
    }
    fmt::print("kvrag serve: modes {}; open {} (Ctrl-C stops)\n", modes, server.url());
    std::fflush(stdout);
    server.run_until_signal();
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
