// Runs the kvrag binary as a user would, for tests.
#pragma once

#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "support/test_support.h"

namespace kvrag::test {

struct CliRun {
  int exit_code;
  std::string out, err;
};

// Runs the shell command line `command` with stdin from `input`, capturing stdout and stderr.
inline CliRun run_command(const std::string& command, const std::string& input = "") {
  TempDir tmp;
  std::ofstream(tmp / "in") << input;
  const std::string cmd =
      command + " <" + (tmp / "in") + " >" + (tmp / "out") + " 2>" + (tmp / "err");
  const int status = std::system(cmd.c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(tmp / "out"), slurp(tmp / "err")};
}

// Runs `kvrag ARGS` through the shell with stdin from `input`, capturing stdout and stderr.
// `env` is prepended to the command line (e.g. "KVRAG_THREADS=1 ").
inline CliRun run_kvrag(const std::string& args, const std::string& input = "",
                        const std::string& env = "") {
  return run_command(env + std::string(KVRAG_CLI_PATH) + " " + args, input);
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace kvrag::test
