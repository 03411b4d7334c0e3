// resolve_shard (index/shard.h): --shard i/n, the three MPI launchers' environments, and the
// row ranges, which tile the rows.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

#include "index/shard.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

const char* const kLauncherVars[] = {"OMPI_COMM_WORLD_RANK",
                                     "OMPI_COMM_WORLD_SIZE",
                                     "PMIX_RANK",
                                     "PMIX_SIZE",
                                     "PMI_RANK",
                                     "PMI_SIZE"};

// Clears the launchers' variables for each test and restores them afterwards.
class Shard : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : kLauncherVars) {
      if (const char* v = std::getenv(name)) saved_[name] = v;
      unsetenv(name);
    }
  }
  void TearDown() override {
    for (const char* name : kLauncherVars) {
      unsetenv(name);
      if (saved_.count(name)) setenv(name, saved_[name].c_str(), 1);
    }
  }

 private:
  std::map<std::string, std::string> saved_;
};

TEST_F(Shard, SingleProcessByDefault) {
  const ShardSpec s = resolve_shard("");
  EXPECT_EQ(s.index, 0);
  EXPECT_EQ(s.count, 1);
  EXPECT_EQ(s.source, "single process");
  EXPECT_EQ(s.begin(10), 0);
  EXPECT_EQ(s.end(10), 10);
}

TEST_F(Shard, FromTheFlag) {
  setenv("OMPI_COMM_WORLD_RANK", "2", 1);  // the flag wins over the launcher
  setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
  const ShardSpec s = resolve_shard("1/3");
  EXPECT_EQ(s.index, 1);
  EXPECT_EQ(s.count, 3);
  EXPECT_EQ(s.source, "--shard");
}

TEST_F(Shard, BadFlagsAreErrors) {
  for (const char* bad : {"3", "a/4", "1/", "/4"}) {
    EXPECT_EQ(test::error_of([&] { resolve_shard(bad); }),
              std::string("--shard must look like i/n (e.g. 0/4), got '") + bad + "'")
        << bad;
  }
  EXPECT_EQ(test::error_of([] { resolve_shard("3/3"); }),
            "shard 3/3 from --shard: need 0 <= i < n");
  EXPECT_EQ(test::error_of([] { resolve_shard("-1/3"); }),
            "shard -1/3 from --shard: need 0 <= i < n");
  EXPECT_EQ(test::error_of([] { resolve_shard("0/0"); }),
            "shard 0/0 from --shard: need 0 <= i < n");
}

TEST_F(Shard, FromEachMpiLauncher) {
  const std::pair<const char*, const char*> launchers[] = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
      {"PMIX_RANK", "PMIX_SIZE"},
      {"PMI_RANK", "PMI_SIZE"}};
  for (const auto& [rank, size] : launchers) {
    SetUp();
    setenv(rank, "2", 1);
    setenv(size, "5", 1);
    const ShardSpec s = resolve_shard("");
    EXPECT_EQ(s.index, 2) << rank;
    EXPECT_EQ(s.count, 5) << rank;
    EXPECT_EQ(s.source, std::string("MPI (") + rank + "/" + size + ")");
  }
}

TEST_F(Shard, OpenMpiBeforePmixBeforePmi) {
  setenv("PMI_RANK", "0", 1);
  setenv("PMI_SIZE", "2", 1);
  setenv("PMIX_RANK", "1", 1);
  setenv("PMIX_SIZE", "2", 1);
  EXPECT_EQ(resolve_shard("").source, "MPI (PMIX_RANK/PMIX_SIZE)");
  setenv("OMPI_COMM_WORLD_RANK", "0", 1);  // a rank without a size does not count
  EXPECT_EQ(resolve_shard("").source, "MPI (PMIX_RANK/PMIX_SIZE)");
  setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
  EXPECT_EQ(resolve_shard("").source, "MPI (OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE)");
  setenv("OMPI_COMM_WORLD_RANK", "3", 1);
  EXPECT_EQ(test::error_of([] { resolve_shard(""); }),
            "shard 3/3 from MPI (OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE): need 0 <= i < n");
}

TEST_F(Shard, RangesTileTheRows) {
  for (int n : {1, 2, 3, 7}) {
    for (int64_t total : {0, 1, 5, 100, 101}) {
      int64_t next = 0;
      for (int i = 0; i < n; ++i) {
        const ShardSpec s = resolve_shard(std::to_string(i) + "/" + std::to_string(n));
        EXPECT_EQ(s.begin(total), next);
        EXPECT_LE(s.begin(total), s.end(total));
        next = s.end(total);
      }
      EXPECT_EQ(next, total);
    }
  }
}

}  // namespace
}  // namespace kvrag
