// EmbeddingSet: shards tiling the row range, encoder.json, reads across shard boundaries, errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "index/embedding_set.h"
#include "index/npy_file.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

template <typename F>
std::string set_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_SET_ERROR(stmt, part)                                            \
  do {                                                                          \
    const std::string msg_ = set_error([&] { stmt; });                          \
    EXPECT_NE(msg_.find(part), std::string::npos) << "error: '" << msg_ << "'"; \
  } while (0)

// Row r, column c of the test matrix (exact in float16).
float value(int64_t r, int64_t c) { return float((r * 7 + c) % 512) / 8.0f; }

// Writes rows [begin, end) of the test matrix as a float16 shard of `dir`.
void write_shard(const std::string& dir, int64_t begin, int64_t end, int dim) {
  std::vector<uint16_t> h((end - begin) * dim);
  for (int64_t r = begin; r < end; ++r) {
    for (int c = 0; c < dim; ++c) h[(r - begin) * dim + c] = float_to_half(value(r, c));
  }
  write_npy(dir + "/" + EmbeddingSet::shard_name(begin, end), NpyDtype::kF16, h.data(), end - begin,
            dim);
}

void write_encoder(const std::string& dir, int dim,
                   const std::string& fingerprint = "00112233aabbccdd") {
  std::ofstream(dir + "/encoder.json")
      << nlohmann::json{{"path", "/enc"}, {"fingerprint", fingerprint}, {"dim", dim}}.dump();
}

TEST(EmbeddingSet, ShardNames) {
  EXPECT_EQ(EmbeddingSet::shard_name(0, 16384), "emb-000000000000-000000016384.npy");
  int64_t b = -1, e = -1;
  EXPECT_TRUE(EmbeddingSet::parse_shard_name("emb-000000000010-000000000020.npy", &b, &e));
  EXPECT_EQ(b, 10);
  EXPECT_EQ(e, 20);
  EXPECT_FALSE(
      EmbeddingSet::parse_shard_name("emb-000000000010-000000000020.npy.tmp.12.0", &b, &e));
  EXPECT_FALSE(EmbeddingSet::parse_shard_name("emb-00000000001x-000000000020.npy", &b, &e));
  EXPECT_FALSE(EmbeddingSet::parse_shard_name("emb-10-20.npy", &b, &e));
}

TEST(EmbeddingSet, ShardsTileAndReadAcrossBoundaries) {
  TempDir dir;
  const int dim = 6;
  write_encoder(dir.path(), dim);
  write_shard(dir.path(), 40, 100, dim);  // written out of order
  write_shard(dir.path(), 0, 16, dim);
  write_shard(dir.path(), 16, 40, dim);
  std::ofstream(dir / "notes.txt") << "not a shard";
  std::ofstream(dir / (EmbeddingSet::shard_name(100, 120) + ".tmp.99.0"))
      << "a writer's temporary file";

  const auto set = EmbeddingSet::open(dir.path(), 100);
  EXPECT_EQ(set->size(), 100);
  EXPECT_EQ(set->dim(), dim);
  EXPECT_EQ(set->fingerprint(), "00112233aabbccdd");
  EXPECT_EQ(set->encoder()["path"], "/enc");

  std::vector<float> got(70 * dim);
  set->get_range(10, 70, got.data());  // spans all three shards
  for (int64_t r = 10; r < 80; ++r) {
    for (int c = 0; c < dim; ++c) ASSERT_EQ(got[(r - 10) * dim + c], value(r, c)) << r << "," << c;
  }
  const std::vector<int64_t> ids = {99, 0, 15, 16, 39, 40, 57, 15};
  std::vector<float> rows(ids.size() * dim);
  set->get(ids, rows.data());
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int c = 0; c < dim; ++c) ASSERT_EQ(rows[i * dim + c], value(ids[i], c));
  }
  set->prefetch(90, 1000);  // out-of-range parts are ignored
  EXPECT_SET_ERROR(set->get({100}, rows.data()), "row 100 out of range");
  EXPECT_SET_ERROR(set->get({-1}, rows.data()), "out of range");
  EXPECT_SET_ERROR(set->get_range(95, 6, got.data()), "out of range");
}

TEST(EmbeddingSet, ErrorsNameTheFolderOrFile) {
  TempDir root;
  auto fresh = [&](const std::string& name) {
    const std::string d = root / name;
    fs::create_directories(d);
    write_encoder(d, 4);
    return d;
  };
  EXPECT_SET_ERROR(EmbeddingSet::open(root / "nowhere"), "does not exist");

  const std::string empty = fresh("empty");
  EXPECT_SET_ERROR(EmbeddingSet::open(empty), "no embedding shards");

  const std::string gap = fresh("gap");
  write_shard(gap, 0, 10, 4);
  write_shard(gap, 12, 20, 4);
  EXPECT_SET_ERROR(EmbeddingSet::open(gap), "rows [10, 12) are missing");

  const std::string late = fresh("late");
  write_shard(late, 5, 10, 4);
  EXPECT_SET_ERROR(EmbeddingSet::open(late), "rows [0, 5) are missing");

  const std::string overlap = fresh("overlap");
  write_shard(overlap, 0, 10, 4);
  write_shard(overlap, 8, 20, 4);
  EXPECT_SET_ERROR(EmbeddingSet::open(overlap), "overlap");

  const std::string dims = fresh("dims");
  write_shard(dims, 0, 10, 4);
  write_shard(dims, 10, 20, 5);
  EXPECT_SET_ERROR(EmbeddingSet::open(dims), "dimension 5 differs from 4");

  const std::string enc_dim = fresh("enc_dim");
  write_shard(enc_dim, 0, 10, 8);
  EXPECT_SET_ERROR(EmbeddingSet::open(enc_dim), "does not match the shards' dimension 8");

  const std::string rows = fresh("rows");
  std::vector<uint16_t> h(3 * 4, 0);
  write_npy(rows + "/" + EmbeddingSet::shard_name(0, 5), NpyDtype::kF16, h.data(), 3, 4);
  EXPECT_SET_ERROR(EmbeddingSet::open(rows), "holds 3 rows, but its name says 5");

  const std::string count = fresh("count");
  write_shard(count, 0, 10, 4);
  EXPECT_SET_ERROR(EmbeddingSet::open(count, 11), "hold 10 rows, expected 11");
  EXPECT_EQ(EmbeddingSet::open(count, 10)->size(), 10);

  const std::string truncated = fresh("truncated");
  write_shard(truncated, 0, 10, 4);
  fs::resize_file(truncated + "/" + EmbeddingSet::shard_name(0, 10), 100);
  EXPECT_SET_ERROR(EmbeddingSet::open(truncated), EmbeddingSet::shard_name(0, 10) + ": truncated");

  const std::string no_encoder = root / "no_encoder";
  fs::create_directories(no_encoder);
  write_shard(no_encoder, 0, 10, 4);
  EXPECT_SET_ERROR(EmbeddingSet::open(no_encoder), "encoder.json: missing");
  std::ofstream(no_encoder + "/encoder.json") << "{not json";
  EXPECT_SET_ERROR(EmbeddingSet::open(no_encoder), "encoder.json: invalid JSON");
}

}  // namespace
}  // namespace kvrag
