#include "index/segment_corpus.h"

#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include "core/error.h"
#include "core/folder_lock.h"
#include "core/progress.h"
#include "text/tokenizer.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {

SegmentCorpusResult segment_corpus(const std::string& corpus_path, const std::string& tokenizer,
                                   const std::string& index_dir, SegmentBuildOptions options,
                                   bool progress) {
  const std::string file = wordpiece_tokenizer_file(tokenizer);
  std::unique_ptr<Tokenizer> loaded = load_tokenizer(file);
  auto* wordpiece = dynamic_cast<WordPieceTokenizer*>(loaded.get());
  KVRAG_CHECK(wordpiece != nullptr,
              "tokenizer {}: segmenting needs the retriever's WordPiece tokenizer (vocab.txt or "
              "tokenizer.json)",
              file);
  options.tokenizer_id = tokenizer_id(file);
  options.tokenizer_file = std::filesystem::absolute(file).lexically_normal().string();
  validate(options.segmenter);
  const FolderLock lock(index_dir, LockMode::kExclusive, "kvrag segment");

  SegmentCorpusResult r;
  r.store_path = (std::filesystem::path(index_dir) / "segments.sqlite").string();
  // Made at the first report, which says where this run starts.
  std::unique_ptr<ProgressReporter> reporter;
  r.build = build_segment_store(
      r.store_path, corpus_path, *wordpiece, options, [&](const SegmentBuildProgress& p) {
        if (!reporter) {
          if (p.resumed && progress) {
            std::cerr << fmt::format("segment: resuming {} at byte {} ({} documents done)\n",
                                     r.store_path, format_count(p.start_bytes),
                                     format_count(p.start_documents));
          }
          ProgressOptions po;
          po.label = "segment";
          po.unit = "documents";
          po.total_bytes = p.bytes_total;
          po.start_bytes = p.start_bytes;
          po.start_items = p.start_documents;
          po.enabled = progress;
          reporter = std::make_unique<ProgressReporter>(po);
        }
        if (std::string(p.phase) == "optimizing") {
          reporter->finish(p.bytes_done, p.documents);
          if (progress) std::cerr << "segment: optimizing the full-text index…\n";
        } else {
          reporter->update(p.bytes_done, p.documents);
        }
      });
  return r;
}

}  // namespace kvrag
