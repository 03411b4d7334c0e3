// kvrag serve --workspace DIR [--host 127.0.0.1] [--port 8080] [--api-key KEY]
// kvrag serve --llm DIR [--index DIR] [--knowledge-encoder DIR] [...]
//
// Loads the models once and serves the JSON API and the web page (serve/server.h) until
// Ctrl-C / SIGTERM, which finishes the requests in flight.

#include <fmt/format.h>

#include <string>

#include "cli/commands.h"
#include "cli/server_options.h"
#include "core/error.h"
#include "serve/answerer_service.h"
#include "serve/server.h"

namespace kvrag::cli {
void add_serve_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string workspace, llm, index, knowledge_encoder, retriever;
    AnswererOptions answerer;
    ServerOptions server;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("serve", "Answer questions over HTTP: JSON API and a web page");
  cmd->add_option("--workspace", args->workspace,
                  "a `kvrag demo` workspace: its llm/, index/ and knowledge_encoder/ (the explicit "
                  "options below override each)");
  cmd->add_option("--llm", args->llm, "LLaMA checkpoint folder with its tokenizer.model");
  cmd->add_option("--index", args->index,
                  "index folder (segments.sqlite, embeddings/, dense index)");
  cmd->add_option("--knowledge-encoder", args->knowledge_encoder,
                  "knowledge encoder folder (the prefix modes)");
  cmd->add_option("--retriever", args->retriever,
                  "retriever for answering: dense, bm25 or hybrid (default: dense where the index "
                  "has embeddings, else bm25)")
      ->check(CLI::IsMember({"dense", "bm25", "hybrid"}));
  cmd->add_option("--encoder", args->answerer.retriever.encoder,
                  "question encoder (default: the index's)");
  cmd->add_option("--dtype", args->answerer.dtype, "LLM compute dtype")
      ->capture_default_str()
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--max-new-tokens", args->answerer.max_new_tokens,
                  "answer length limit in tokens")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  add_server_options(cmd, args->server);

  cmd->callback([args, &exit_code] {
    check_limits(args->server.http);  // before minutes of loading
    const AnswererOptions o = resolve_sources(
        {args->workspace, args->llm, args->index, args->knowledge_encoder, args->retriever},
        args->answerer);
    fmt::print(stderr, "kvrag serve: loading {}{}{}\n", o.llm_dir,
               o.index_dir.empty() ? "" : ", " + o.index_dir,
               o.knowledge_encoder_dir.empty() ? "" : ", " + o.knowledge_encoder_dir);
    auto service = AnswererService::open(o);

    Server server(*service, args->server);
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
