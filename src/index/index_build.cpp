#include "index/index_build.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "core/folder_lock.h"
#include "core/progress.h"
#include "index/embedding_set.h"

namespace kvrag {

namespace {

// Progress of one build stage on stderr; a new stage finishes the previous line.
class StageProgress {
 public:
  explicit StageProgress(int dim) : dim_(dim) {}
  ~StageProgress() { finish(); }

  void operator()(const std::string& stage, int64_t done, int64_t total) {
    // a new stage, or another pass of one (PQ after IVF training)
    if (stage != stage_ || !reporter_) {
      finish();
      stage_ = stage;
      ProgressOptions o;
      o.label = "index: " + stage;
      // Sampling and adding read vectors (float16 bytes give the percentage and ETA);
      // training counts k-means steps (no byte total).
      o.unit = stage == "train" ? "steps" : "vectors";
      o.total_bytes = stage == "train" ? 0 : bytes(stage, total);
      reporter_ = std::make_unique<ProgressReporter>(o);
    }
    done_ = done;
    if (done >= total) {
      finish();
    } else {
      reporter_->update(bytes(stage, done), done);
    }
  }

  void finish() {
    if (reporter_) reporter_->finish(bytes(stage_, done_), done_);
    reporter_.reset();
  }

 private:
  int64_t bytes(const std::string& stage, int64_t n) const {
    return stage == "train" ? 0 : n * dim_ * 2;
  }

  int dim_;
  std::string stage_;
  int64_t done_ = 0;
  std::unique_ptr<ProgressReporter> reporter_;
};

}  // namespace

DenseIndexBuildResult build_dense_index(const std::string& index_dir, IndexBuildOptions options,
                                        bool progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const FolderLock lock(index_dir, LockMode::kExclusive, "kvrag index build");
  const auto vectors = EmbeddingSet::open(index_dir + "/embeddings");
  std::unique_ptr<StageProgress> stages;
  if (progress) {
    const std::string factory =
        !options.train_from.empty() ? "from " + options.train_from
        : options.factory == "auto"
            ? choose_factory(vectors->size(), vectors->dim(), options.max_ram_bytes) + " (auto)"
            : options.factory;
    fmt::print(stderr, "index: {} vectors of dim {} from {}; factory {}\n",
               format_count(vectors->size()), vectors->dim(), vectors->dir(), factory);
    stages = std::make_unique<StageProgress>(vectors->dim());
    options.progress = [&stages](const std::string& stage, int64_t done, int64_t total) {
      (*stages)(stage, done, total);
    };
  }
  // Every byte of every shard against its checksum before a vector goes in (one more pass over
  // the files, at disk speed: small beside training and adding).
  const ChecksumReport checked =
      vectors->verify(ChecksumCheck::kFull, [&options](int64_t done, int64_t total) {
        if (options.progress) options.progress("check", done, total);
      });
  if (progress && checked.unchecked > 0) {
    fmt::print(stderr,
               "index: {} of {} shards in {} have no recorded checksum (embedded before kvrag "
               "recorded them) and were not checked\n",
               checked.unchecked, checked.shards, vectors->dir());
  }
  const auto index = DenseIndex::build(*vectors, options);
  if (stages) stages->finish();
  index->save(index_dir);

  DenseIndexBuildResult r;
  r.size = index->size();
  r.faiss_bytes = static_cast<int64_t>(std::filesystem::file_size(index_dir + "/dense.faiss"));
  r.defaults = index->defaults();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

nlohmann::json dense_index_info(const std::string& dir) {
  namespace fs = std::filesystem;
  std::unique_ptr<EmbeddingSet> vectors;
  if (fs::is_directory(dir + "/embeddings")) vectors = EmbeddingSet::open(dir + "/embeddings");
  const auto index = DenseIndex::load(dir, vectors.get());
  auto info = index->info();
  info["faiss_file_bytes"] = static_cast<int64_t>(fs::file_size(dir + "/dense.faiss"));
  if (vectors) {
    info["embeddings"] = {{"dir", vectors->dir()},
                          {"size", vectors->size()},
                          {"dim", vectors->dim()},
                          {"fingerprint", vectors->fingerprint()}};
  }
  return info;
}

}  // namespace kvrag
