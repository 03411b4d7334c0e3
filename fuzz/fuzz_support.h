// What several harnesses share: the input as a file, for readers that take a path, and the
// models in ../shared.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kvrag_fuzz {

// The input written to one private temporary file per suffix (in memory where /dev/shm
// exists), rewritten for each input and removed at exit.
// Writes data[0, size) to the harness's file (named with `suffix`, e.g. ".jsonl") and returns
// its path. Aborts if the file cannot be written (a broken machine, not a finding).
std::string input_file(const uint8_t* data, size_t size, const std::string& suffix);

// The path of `relative` under the shared material ($KVRAG_SHARED, else the shared/ folder beside
// the source tree), or "" when it is not there; the first miss is reported once on stderr.
std::string shared_file(const std::string& relative);

}  // namespace kvrag_fuzz
