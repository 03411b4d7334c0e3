// Replays every kept input of every fuzz harness (fuzz/corpus/NAME: seeds, and the inputs of
// defects the fuzzers found, named regression-*) through the harness itself, built here as a
// plain function. Under the plain build this catches crashes and escaping exceptions; under
// scripts/sanitize_tests.sh, memory and undefined-behaviour errors too.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#define KVRAG_FUZZ_HARNESS(name) extern "C" int kvrag_fuzz_##name(const uint8_t*, size_t);
KVRAG_FUZZ_HARNESS(safetensors)
KVRAG_FUZZ_HARNESS(npy)
KVRAG_FUZZ_HARNESS(config)
KVRAG_FUZZ_HARNESS(corpus_reader)
KVRAG_FUZZ_HARNESS(wordpiece)
KVRAG_FUZZ_HARNESS(sentencepiece)
KVRAG_FUZZ_HARNESS(server_request)

namespace {

namespace fs = std::filesystem;

struct Harness {
  const char* name;
  int (*run)(const uint8_t*, size_t);
};

const Harness kHarnesses[] = {
    {"safetensors", kvrag_fuzz_safetensors},
    {"npy", kvrag_fuzz_npy},
    {"config", kvrag_fuzz_config},
    {"corpus_reader", kvrag_fuzz_corpus_reader},
    {"wordpiece", kvrag_fuzz_wordpiece},
    {"sentencepiece", kvrag_fuzz_sentencepiece},
    {"server_request", kvrag_fuzz_server_request},
};

void PrintTo(const Harness& h, std::ostream* os) { *os << h.name; }

const fs::path kCorpus = fs::path(KVRAG_SOURCE_DIR) / "fuzz" / "corpus";

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class FuzzCorpus : public testing::TestWithParam<Harness> {};

TEST_P(FuzzCorpus, EveryKeptInputRunsCleanly) {
  const fs::path dir = kCorpus / GetParam().name;
  ASSERT_TRUE(fs::is_directory(dir)) << dir << ": every harness keeps its seeds there";
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty()) << dir;
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    const std::string bytes = read_bytes(f);
    EXPECT_EQ(GetParam().run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Harnesses, FuzzCorpus, testing::ValuesIn(kHarnesses),
                         [](const auto& info) { return std::string(info.param.name); });

// A harness added to fuzz/harnesses.cmake without a replay here, or the other way round, fails.
TEST(FuzzCorpus, EveryHarnessIsReplayed) {
  std::set<std::string> replayed, kept;
  for (const auto& h : kHarnesses) replayed.insert(h.name);
  for (const auto& e : fs::directory_iterator(kCorpus))
    if (e.is_directory()) kept.insert(e.path().filename().string());
  EXPECT_EQ(replayed, kept);
}

}  // namespace
