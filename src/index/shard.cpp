#include "index/shard.h"

#include <fmt/format.h>

#include <cstdlib>
#include <stdexcept>
#include <utility>

#include "core/error.h"

namespace kvrag {

ShardSpec resolve_shard(const std::string& flag) {
  ShardSpec s;
  if (!flag.empty()) {
    const auto slash = flag.find('/');
    try {
      KVRAG_CHECK(slash != std::string::npos, "");
      s.index = std::stoi(flag.substr(0, slash));
      s.count = std::stoi(flag.substr(slash + 1));
    } catch (const std::exception&) {
      fail("--shard must look like i/n (e.g. 0/4), got '{}'", flag);
    }
    s.source = "--shard";
  } else {
    const std::pair<const char*, const char*> launchers[] = {
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
        {"PMIX_RANK", "PMIX_SIZE"},
        {"PMI_RANK", "PMI_SIZE"}};
    for (const auto& [rank, size] : launchers) {
      const char* r = std::getenv(rank);
      const char* n = std::getenv(size);
      if (r != nullptr && n != nullptr) {
        s.index = std::atoi(r);
        s.count = std::atoi(n);
        s.source = fmt::format("MPI ({}/{})", rank, size);
        break;
      }
    }
  }
  KVRAG_CHECK(s.count >= 1 && s.index >= 0 && s.index < s.count,
              "shard {}/{} from {}: need 0 <= i < n", s.index, s.count, s.source);
  return s;
}

}  // namespace kvrag
