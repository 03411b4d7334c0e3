// kvrag ask: NOT IMPLEMENTED YET (placeholder registering the subcommand).

#include "cli/commands.h"
#include "core/error.h"

namespace kvrag::cli {

void add_ask_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("ask", "(not implemented yet)");
  cmd->allow_extras();
  cmd->callback([&exit_code] {
    exit_code = 1;
    fail("ask is not implemented yet");
  });
}

}  // namespace kvrag::cli
