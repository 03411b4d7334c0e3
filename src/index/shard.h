// Which part of a job this process does: `--shard i/n`, else the rank and size an MPI launcher
// (Open MPI, PMIx, MPICH/PMI) puts in the environment, else all of it. Part i of n of `total`
// rows is the contiguous range [total·i/n, total·(i+1)/n), so the parts tile the rows.
#pragma once

#include <cstdint>
#include <string>

namespace kvrag {

struct ShardSpec {
  int index = 0, count = 1;
  // "--shard", "MPI (OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE)", …
  std::string source = "single process";

  int64_t begin(int64_t total) const { return total * index / count; }
  int64_t end(int64_t total) const { return total * (index + 1) / count; }
};

// `flag` ("i/n") if not empty, else the first launcher's environment found (OMPI_COMM_WORLD_RANK/
// _SIZE, PMIX_RANK/PMIX_SIZE, PMI_RANK/PMI_SIZE), else 0/1. Error unless 0 <= i < n.
ShardSpec resolve_shard(const std::string& flag);

}  // namespace kvrag
