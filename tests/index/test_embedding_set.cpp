// EmbeddingSet: shards tiling the row range, encoder.json, reads across shard boundaries, errors,
// and the shards' checksums.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "index/block_checksum.h"
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

// Writes rows [begin, end) of the test matrix as a float16 shard of `dir`: as `kvrag embed`
// does, with its checksum (EmbeddingSet::write_shard), or without one, as before checksums.
void write_shard(const std::string& dir, int64_t begin, int64_t end, int dim,
                 bool checksum = false) {
  std::vector<uint16_t> h((end - begin) * dim);
  for (int64_t r = begin; r < end; ++r) {
    for (int c = 0; c < dim; ++c) h[(r - begin) * dim + c] = float_to_half(value(r, c));
  }
  if (checksum) {
    EmbeddingSet::write_shard(dir, begin, end, NpyDtype::kF16, h.data(), dim);
  } else {
    write_npy(dir + "/" + EmbeddingSet::shard_name(begin, end), NpyDtype::kF16, h.data(),
              end - begin, dim);
  }
}

// Adds `delta` to the byte at `offset` of `path`, in place.
void add_to_byte(const std::string& path, int64_t offset, int delta) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  const char c = static_cast<char>(f.get());
  f.seekp(offset);
  f.put(static_cast<char>(c + delta));
  ASSERT_TRUE(f.good()) << path;
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

TEST(BlockChecksum, PiecesOfAnySizeGiveTheSameBlocks) {
  std::vector<unsigned char> bytes(3 * BlockChecksum::kBlockBytes + 1001);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<unsigned char>(i * 31 + i / 7);
  BlockChecksummer whole;
  whole.add(bytes.data(), bytes.size());
  const BlockChecksum a = whole.finish();
  EXPECT_EQ(a.file_bytes, bytes.size());
  ASSERT_EQ(a.blocks.size(), 4u);
  EXPECT_EQ(a.block_end(3), bytes.size());
  // Each block is word-wise FNV-1a of its bytes.
  Fnv1a64 last;
  last.add_words(bytes.data() + 3 * BlockChecksum::kBlockBytes, 1001);
  EXPECT_EQ(a.blocks[3], last.value());

  BlockChecksummer pieces;
  for (size_t pos = 0, step = 1; pos < bytes.size(); step = step * 3 + 5) {
    const size_t n = std::min(step, bytes.size() - pos);
    pieces.add(bytes.data() + pos, n);
    pos += n;
  }
  const BlockChecksum b = pieces.finish();
  EXPECT_EQ(b.blocks, a.blocks);
  EXPECT_EQ(b.file_bytes, a.file_bytes);
  EXPECT_EQ(BlockChecksummer().finish().blocks.size(), 0u);  // an empty file: no blocks
}

TEST(EmbeddingSet, ChecksumsCatchAShardChangedAfterItWasWritten) {
  TempDir root;
  const std::string dir = root / "emb";
  fs::create_directories(dir);
  const int dim = 128;  // 300 float16 rows: 128 + 76,800 bytes, two 64 KiB blocks
  write_encoder(dir, dim);
  write_shard(dir, 0, 10, dim, true);
  write_shard(dir, 10, 310, dim, true);
  const std::string first = dir + "/" + EmbeddingSet::shard_name(0, 10);
  const std::string shard = dir + "/" + EmbeddingSet::shard_name(10, 310);
  ASSERT_TRUE(fs::exists(shard + ".sum"));
  const auto sum = read_checksum(shard);
  ASSERT_TRUE(sum.has_value());
  EXPECT_EQ(sum->file_bytes, fs::file_size(shard));
  EXPECT_EQ(sum->blocks.size(), 2u);

  auto report = EmbeddingSet::open(dir, 310)->verify(ChecksumCheck::kFull);
  EXPECT_EQ(report.shards, 2);
  EXPECT_EQ(report.unchecked, 0);
  EXPECT_EQ(report.bytes_read, fs::file_size(shard) + fs::file_size(first));
  std::vector<int64_t> seen;
  EmbeddingSet::open(dir)->verify(ChecksumCheck::kFull, [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 310);
    seen.push_back(done);
  });
  EXPECT_EQ(seen, (std::vector<int64_t>{10, 310}));

  // One byte of the data, in the second block: opening still works (it reads no data); both
  // checks refuse, naming the file and the bytes.
  add_to_byte(shard, 70000, 1);
  const auto set = EmbeddingSet::open(dir, 310);
  for (const auto check : {ChecksumCheck::kFull, ChecksumCheck::kSample}) {
    const std::string msg = set_error([&] { set->verify(check); });
    EXPECT_NE(msg.find(shard + ": checksum mismatch in bytes [65536, 76928) (recorded "),
              std::string::npos)
        << msg;
    EXPECT_NE(msg.find("the file changed after `kvrag embed` wrote it"), std::string::npos) << msg;
  }
  std::string why;
  EXPECT_FALSE(EmbeddingSet::shard_intact(shard, 300, dim, &why));
  EXPECT_NE(why.find("checksum mismatch"), std::string::npos) << why;
  add_to_byte(shard, 70000, -1);
  EXPECT_TRUE(EmbeddingSet::shard_intact(shard, 300, dim, &why));
  EXPECT_EQ(EmbeddingSet::open(dir)->verify(ChecksumCheck::kSample).unchecked, 0);

  // Replaced by vectors of the same shape, or by float32 ones (another size).
  std::vector<float> zeros(300 * dim, 0.0f);
  std::vector<uint16_t> zero_halves(300 * dim, 0);
  write_npy(shard, NpyDtype::kF16, zero_halves.data(), 300, dim);
  EXPECT_SET_ERROR(EmbeddingSet::open(dir)->verify(ChecksumCheck::kSample),
                   shard + ": checksum mismatch in bytes [0, 65536)");
  write_npy(shard, NpyDtype::kF32, zeros.data(), 300, dim);
  EXPECT_SET_ERROR(EmbeddingSet::open(dir)->verify(ChecksumCheck::kFull),
                   shard + ": 153728 bytes, but 76928 were recorded in " + shard + ".sum");

  // A shard without a checksum (written before kvrag recorded them) is read as before.
  fs::remove(shard + ".sum");
  report = EmbeddingSet::open(dir, 310)->verify(ChecksumCheck::kFull);
  EXPECT_EQ(report.unchecked, 1);
  EXPECT_EQ(report.bytes_read, fs::file_size(first));
  EXPECT_TRUE(EmbeddingSet::shard_intact(shard, 300, dim, &why));

  // A malformed checksum file is an error naming it.
  std::ofstream(first + ".sum") << "{\"format\": \"kvrag-block-checksum-1\"}";
  EXPECT_SET_ERROR(EmbeddingSet::open(dir), first + ".sum: hash \"\" is not supported");
  std::ofstream(first + ".sum") << "not json";
  EXPECT_SET_ERROR(EmbeddingSet::open(dir), first + ".sum: malformed checksum file");
}

TEST(EmbeddingSet, SampledCheckReadsAtMost64MiBWithEveryShardInIt) {
  // Three shards of 24 MiB: 72 MiB in all, more than the sample.
  TempDir dir;
  const int dim = 768;
  const int64_t rows = 16384;
  write_encoder(dir.path(), dim);
  for (int s = 0; s < 3; ++s) write_shard(dir.path(), s * rows, (s + 1) * rows, dim, true);
  const auto set = EmbeddingSet::open(dir.path(), 3 * rows);
  const uint64_t sample = kChecksumSampleBytes, block = BlockChecksum::kBlockBytes;
  for (int i = 0; i < 3; ++i) {
    const auto report = set->verify(ChecksumCheck::kSample);
    EXPECT_LE(report.bytes_read, sample);
    EXPECT_GE(report.bytes_read, sample - 4 * block);  // shares rounded down, short last blocks
  }
  EXPECT_GT(set->verify(ChecksumCheck::kFull).bytes_read, sample);

  // A shard rewritten since: every block differs, so the sample always sees it.
  const std::string middle = dir / EmbeddingSet::shard_name(rows, 2 * rows);
  std::vector<uint16_t> zeros(rows * dim, 0);
  write_npy(middle, NpyDtype::kF16, zeros.data(), rows, dim);
  for (int i = 0; i < 3; ++i) {
    EXPECT_SET_ERROR(EmbeddingSet::open(dir.path())->verify(ChecksumCheck::kSample),
                     middle + ": checksum mismatch");
  }
}

}  // namespace
}  // namespace kvrag
