// Options shared by the commands that answer questions (ask, eval): the LLM, the index and
// retriever, the knowledge encoder, generation limits → AnswererOptions.
#pragma once

#include <CLI/CLI.hpp>

#include "qa/answerer.h"

namespace kvrag::cli {

// Registers --llm (required), --index, --retriever, --encoder, --knowledge-encoder, --dtype,
// --max-new-tokens, --max-question-tokens on `cmd`, writing into `options`.
void add_answerer_options(CLI::App* cmd, AnswererOptions& options);

}  // namespace kvrag::cli
