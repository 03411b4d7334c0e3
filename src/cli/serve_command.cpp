// kvrag serve: NOT IMPLEMENTED YET (placeholder registering the subcommand).

#include "cli/commands.h"
#include "core/error.h"

namespace kvrag::cli {

void add_serve_command(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("serve", "(not implemented yet)");
  cmd->allow_extras();
  cmd->callback([&exit_code] {
    exit_code = 1;
    fail("serve is not implemented yet");
  });
}

}  // namespace kvrag::cli
