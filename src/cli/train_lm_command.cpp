// kvrag train-lm: NOT IMPLEMENTED YET (placeholder registering the subcommand).

#include "cli/commands.h"
#include "core/error.h"

namespace kvrag::cli {

void add_train_lm_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("train-lm", "(not implemented yet)");
  cmd->allow_extras();
  cmd->callback([&exit_code] {
    exit_code = 1;
    fail("train-lm is not implemented yet");
  });
}

}  // namespace kvrag::cli
