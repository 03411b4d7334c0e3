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

// Indexes `corpus` into `index` as a user would: segment (windows of 48 tokens of `encoder`'s
// vocabulary, stride 8), embed (fp32), index build (Flat). The first run that fails, else the
// last.
inline CliRun build_index_with_cli(const std::string& encoder, const std::string& corpus,
                                   const std::string& index) {
  for (const std::string& args :
       {"segment --corpus " + corpus + " --tokenizer " + encoder + "/vocab.txt --index " + index +
            " --window 48 --stride 8",
        "embed --index " + index + " --encoder " + encoder + " --dtype fp32",
        "index build --index " + index + " --factory Flat"}) {
    auto r = run_kvrag(args);
    if (r.exit_code != 0 || args.rfind("index build", 0) == 0) return r;
  }
  return {};
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace kvrag::test
