// The kvrag subcommands. Each add_*_command registers one subcommand on the app; its callback
// runs the command and stores the process exit code in `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/number_check.h"

namespace kvrag::cli {

void add_check_model_command(CLI::App& app, int& exit_code);
void add_quantize_command(CLI::App& app, int& exit_code);  // quantize_command.cpp
void add_tokenize_command(CLI::App& app, int& exit_code);
void add_generate_command(CLI::App& app, int& exit_code);
void add_segment_command(CLI::App& app, int& exit_code);
void add_prepare_nq_command(CLI::App& app, int& exit_code);  // prepare_nq_command.cpp
void add_embed_command(CLI::App& app, int& exit_code);
void add_index_command(CLI::App& app, int& exit_code);
// `index build-prefixes` (index_prefixes_command.cpp), registered by add_index_command
void add_build_prefixes(CLI::App* index, int& exit_code);
void add_search_command(CLI::App& app, int& exit_code);
void add_eval_retrieval_command(CLI::App& app, int& exit_code);
void add_train_retriever_command(CLI::App& app, int& exit_code);  // train_retriever_command.cpp
void add_train_tokenizer_command(CLI::App& app, int& exit_code);  // train_tokenizer_command.cpp
void add_train_lm_command(CLI::App& app, int& exit_code);         // train_lm_command.cpp
void add_train_prefix_command(CLI::App& app, int& exit_code);     // train_prefix_command.cpp
// train_query_encoder_command.cpp
void add_train_query_encoder_command(CLI::App& app, int& exit_code);
void add_ask_command(CLI::App& app, int& exit_code);    // ask_command.cpp
void add_eval_command(CLI::App& app, int& exit_code);   // eval_command.cpp
void add_demo_command(CLI::App& app, int& exit_code);   // demo_command.cpp
void add_serve_command(CLI::App& app, int& exit_code);  // serve_command.cpp

}  // namespace kvrag::cli
