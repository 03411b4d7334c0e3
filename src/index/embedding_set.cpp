// EmbeddingSet: a folder of .npy shards that tile the segment ids, read through memory maps.
#include "index/embedding_set.h"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <random>

#include "core/atomic_file.h"
#include "core/error.h"

namespace kvrag {

namespace fs = std::filesystem;

std::string EmbeddingSet::shard_name(int64_t begin, int64_t end) {
  return fmt::format("emb-{:012d}-{:012d}.npy", begin, end);
}

bool EmbeddingSet::parse_shard_name(const std::string& name, int64_t* begin, int64_t* end) {
  // "emb-" 12 digits "-" 12 digits ".npy"
  constexpr size_t kLen = 4 + 12 + 1 + 12 + 4;
  if (name.size() != kLen || name.compare(0, 4, "emb-") != 0 || name[16] != '-' ||
      name.compare(kLen - 4, 4, ".npy") != 0) {
    return false;
  }
  auto digits = [&](size_t pos, int64_t* out) {
    int64_t v = 0;
    for (size_t i = pos; i < pos + 12; ++i) {
      if (name[i] < '0' || name[i] > '9') return false;
      v = v * 10 + (name[i] - '0');
    }
    *out = v;
    return true;
  };
  return digits(4, begin) && digits(17, end);
}

std::unique_ptr<EmbeddingSet> EmbeddingSet::open(const std::string& embeddings_dir,
                                                 int64_t expected_rows) {
  std::unique_ptr<EmbeddingSet> set(new EmbeddingSet());
  set->dir_ = embeddings_dir;
  std::error_code ec;
  KVRAG_CHECK(fs::is_directory(embeddings_dir, ec),
              "embeddings folder {} does not exist (run kvrag embed first)", embeddings_dir);

  const std::string encoder_path = embeddings_dir + "/encoder.json";
  KVRAG_CHECK(fs::exists(encoder_path, ec), "{}: missing (the embeddings' encoder is unknown)",
              encoder_path);
  try {
    set->encoder_ = nlohmann::json::parse(read_file(encoder_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", encoder_path, e.what());
  }
  KVRAG_CHECK(set->encoder_.is_object(), "{}: expected a JSON object", encoder_path);

  // The shards, by first row.
  struct Entry {
    int64_t begin, end;
    std::string name;
  };
  std::vector<Entry> entries;
  for (const auto& de : fs::directory_iterator(embeddings_dir, ec)) {
    Entry e;
    e.name = de.path().filename().string();
    if (parse_shard_name(e.name, &e.begin, &e.end)) entries.push_back(std::move(e));
  }
  KVRAG_CHECK(!ec, "cannot list {}: {}", embeddings_dir, ec.message());
  KVRAG_CHECK(!entries.empty(), "{}: no embedding shards (emb-*.npy)", embeddings_dir);
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });

  int64_t next = 0;
  for (const auto& e : entries) {
    KVRAG_CHECK(e.end > e.begin, "{}/{}: empty or reversed row range", embeddings_dir, e.name);
    KVRAG_CHECK(e.begin >= next,
                "{}: shards overlap: {} starts at row {}, but rows up to {} are already covered",
                embeddings_dir, e.name, e.begin, next);
    KVRAG_CHECK(e.begin == next,
                "{}: rows [{}, {}) are missing (gap before {}); is a shard still being embedded?",
                embeddings_dir, next, e.begin, e.name);
    auto m = NpyMatrix::open(embeddings_dir + "/" + e.name);
    KVRAG_CHECK(m->rows() == e.end - e.begin, "{}: holds {} rows, but its name says {}", m->path(),
                m->rows(), e.end - e.begin);
    if (set->shards_.empty()) {
      KVRAG_CHECK(m->cols() <= (int64_t(1) << 20), "{}: dimension {} is implausible", m->path(),
                  m->cols());
      set->dim_ = static_cast<int>(m->cols());
    } else {
      KVRAG_CHECK(m->cols() == set->dim_, "{}: dimension {} differs from {} in {}", m->path(),
                  m->cols(), set->dim_, set->shards_.front()->path());
    }
    set->checksums_.push_back(read_checksum(m->path()));
    set->begins_.push_back(e.begin);
    set->shards_.push_back(std::move(m));
    next = e.end;
  }
  set->size_ = next;

  if (set->encoder_.contains("dim")) {
    const auto& d = set->encoder_["dim"];
    KVRAG_CHECK(d.is_number_integer() && d.get<int64_t>() == set->dim_,
                "{}: dim {} does not match the shards' dimension {}", encoder_path, d.dump(),
                set->dim_);
  }
  KVRAG_CHECK(expected_rows < 0 || expected_rows == set->size_,
              "{}: shards hold {} rows, expected {} (one per segment)", embeddings_dir, set->size_,
              expected_rows);
  return set;
}

ChecksumReport EmbeddingSet::verify(ChecksumCheck check,
                                    const std::function<void(int64_t, int64_t)>& progress) const {
  ChecksumReport report;
  report.shards = static_cast<int64_t>(shards_.size());
  uint64_t recorded_bytes = 0;
  for (const auto& c : checksums_) {
    if (c) recorded_bytes += c->file_bytes;
  }
  const bool all = check == ChecksumCheck::kFull || recorded_bytes <= kChecksumSampleBytes;
  std::mt19937_64 rng(std::random_device{}());
  int64_t done = 0;
  for (size_t s = 0; s < shards_.size(); ++s) {
    const NpyMatrix& m = *shards_[s];
    if (!checksums_[s]) {
      ++report.unchecked;
    } else {
      const BlockChecksum& sum = *checksums_[s];
      std::vector<size_t> blocks(sum.blocks.size());
      std::iota(blocks.begin(), blocks.end(), size_t{0});
      if (!all) {
        // this shard's share of the sample, at least one block
        const double share = double(sum.file_bytes) / double(recorded_bytes);
        const size_t k = std::max<size_t>(
            1, size_t(share * double(kChecksumSampleBytes) / double(sum.block_bytes)));
        std::vector<size_t> sample;
        std::sample(blocks.begin(), blocks.end(), std::back_inserter(sample), k, rng);
        blocks = std::move(sample);
      }
      report.bytes_read += verify_blocks(
          m.path(), m.file_bytes(), sum, blocks,
          [&m](uint64_t offset, size_t n, void* out) { m.read_bytes(offset, n, out); });
    }
    done += m.rows();
    if (progress) progress(done, size_);
  }
  return report;
}

void EmbeddingSet::write_shard(const std::string& dir, int64_t begin, int64_t end, NpyDtype dtype,
                               const void* data, int dim) {
  const std::string path = dir + "/" + shard_name(begin, end);
  KVRAG_CHECK(end >= begin && dim >= 1, "cannot write {}: invalid shape ({}, {})", path,
              end - begin, dim);
  const std::string header = npy_header(dtype, end - begin, dim);
  BlockChecksummer sum;
  sum.add(header.data(), header.size());
  sum.add(data, size_t(end - begin) * size_t(dim) * npy_itemsize(dtype));
  write_checksum(path, sum.finish());
  write_npy(path, dtype, data, end - begin, dim);
}

bool EmbeddingSet::shard_intact(const std::string& path, int64_t rows, int dim, std::string* why) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return false;
  try {
    const auto m = NpyMatrix::open(path);
    if (m->rows() != rows || m->cols() != dim) {
      *why = fmt::format("{}: holds {} × {} values, expected {} × {}", path, m->rows(), m->cols(),
                         rows, dim);
      return false;
    }
    if (const auto sum = read_checksum(path)) {
      std::vector<size_t> blocks(sum->blocks.size());
      std::iota(blocks.begin(), blocks.end(), size_t{0});
      verify_blocks(
          path, m->file_bytes(), *sum, blocks,
          [&m](uint64_t offset, size_t n, void* out) { m->read_bytes(offset, n, out); },
          /*advise=*/false);
    }
    return true;
  } catch (const Error& e) {
    *why = e.what();
    return false;
  }
}

size_t EmbeddingSet::shard_of(int64_t id) const {
  return static_cast<size_t>(std::upper_bound(begins_.begin(), begins_.end(), id) -
                             begins_.begin()) -
         1;
}

void EmbeddingSet::get_range(int64_t begin, int64_t n, float* out) const {
  KVRAG_CHECK(begin >= 0 && n >= 0 && begin + n <= size_, "{}: rows [{}, {}) out of range (0, {})",
              dir_, begin, begin + n, size_);
  while (n > 0) {
    const size_t s = shard_of(begin);
    const int64_t local = begin - begins_[s];
    const int64_t take = std::min(n, shards_[s]->rows() - local);
    shards_[s]->read_rows(local, take, out);
    out += take * dim_;
    begin += take;
    n -= take;
  }
}

void EmbeddingSet::get(const int64_t* ids, int64_t n, float* out) const {
  for (int64_t i = 0; i < n; ++i) {
    KVRAG_CHECK(ids[i] >= 0 && ids[i] < size_, "{}: row {} out of range (0, {})", dir_, ids[i],
                size_);
  }
  for (int64_t i = 0; i < n; ++i) {
    const size_t s = shard_of(ids[i]);
    shards_[s]->row(ids[i] - begins_[s], out + i * dim_);
  }
}

void EmbeddingSet::get(const std::vector<int64_t>& ids, float* out) const {
  get(ids.data(), static_cast<int64_t>(ids.size()), out);
}

void EmbeddingSet::prefetch(int64_t begin, int64_t n) const {
  const int64_t end = std::min(size_, begin + n);
  begin = std::max<int64_t>(begin, 0);
  while (begin < end) {
    const size_t s = shard_of(begin);
    const int64_t local = begin - begins_[s];
    const int64_t take = std::min(end - begin, shards_[s]->rows() - local);
    shards_[s]->prefetch(local, take);
    begin += take;
  }
}

void EmbeddingSet::prefetch(const int64_t* ids, int64_t n) const {
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= size_) continue;
    const size_t s = shard_of(ids[i]);
    shards_[s]->prefetch(ids[i] - begins_[s], 1);
  }
}

}  // namespace kvrag
