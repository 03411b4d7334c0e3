// kvrag eval: NOT IMPLEMENTED YET (placeholder registering the subcommand).

#include "cli/commands.h"
#include "core/error.h"

namespace kvrag::cli {

void add_eval_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("eval", "(not implemented yet)");
  cmd->allow_extras();
  cmd->callback([&exit_code] {
    exit_code = 1;
    fail("eval is not implemented yet");
  });
}

}  // namespace kvrag::cli
