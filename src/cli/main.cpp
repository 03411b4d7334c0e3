// kvrag: git-style command line. `kvrag --help` lists the subcommands, `kvrag CMD --help` their
// options. Errors (kvrag::Error) are printed as "kvrag: error: …" with exit status 1.

#include <spdlog/spdlog.h>

#include <iostream>

#include "cli/commands.h"
#include "core/error.h"
#include "core/malloc_tuning.h"
#include "ops/threads.h"
#include "train/data_parallel.h"

int main(int argc, char** argv) {
  kvrag::tune_malloc();
  CLI::App app{"kvrag: retrieval-augmented QA with dynamic key/value prefixes for a frozen LLM"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kvrag 0.1.0");
  int threads = 0;
  app.add_option("--threads", threads, "compute threads (default: $KVRAG_THREADS, else all cores)")
      ->check(kvrag::cli::kPositive);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "debug logging");

  int exit_code = 0;
  kvrag::cli::add_check_model_command(app, exit_code);
  kvrag::cli::add_quantize_command(app, exit_code);
  kvrag::cli::add_tokenize_command(app, exit_code);
  kvrag::cli::add_generate_command(app, exit_code);
  kvrag::cli::add_prepare_nq_command(app, exit_code);
  kvrag::cli::add_segment_command(app, exit_code);
  kvrag::cli::add_embed_command(app, exit_code);
  kvrag::cli::add_index_command(app, exit_code);
  kvrag::cli::add_search_command(app, exit_code);
  kvrag::cli::add_eval_retrieval_command(app, exit_code);
  kvrag::cli::add_train_retriever_command(app, exit_code);
  kvrag::cli::add_train_tokenizer_command(app, exit_code);
  kvrag::cli::add_train_lm_command(app, exit_code);
  kvrag::cli::add_train_prefix_command(app, exit_code);
  kvrag::cli::add_train_query_encoder_command(app, exit_code);
  kvrag::cli::add_ask_command(app, exit_code);
  kvrag::cli::add_eval_command(app, exit_code);
  kvrag::cli::add_demo_command(app, exit_code);
  kvrag::cli::add_serve_command(app, exit_code);

  // Threads are set before any subcommand runs (CLI11 calls the main callback first).
  app.parse_complete_callback([&] {
    spdlog::set_default_logger(spdlog::default_logger());
    spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
    kvrag::configure_threads(threads);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const kvrag::Error& e) {
    std::cerr << "kvrag: error: " << e.what() << "\n";
    kvrag::abort_distributed_run(1);  // the other ranks of `mpirun kvrag train-*` stop too
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "kvrag: internal error: " << e.what() << "\n";
    kvrag::abort_distributed_run(2);
    return 2;
  }
  return exit_code;
}
