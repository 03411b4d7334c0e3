// Segmenting a corpus into an index folder (`kvrag segment`, the demo's index stage): the
// retriever's WordPiece tokenizer found and identified, build_segment_store (segment_store.h)
// run into INDEX_DIR/segments.sqlite, and its progress reported on stderr, saying where an
// interrupted run resumes.
#pragma once

#include <string>

#include "index/segment_store.h"

namespace kvrag {

struct SegmentCorpusResult {
  std::string store_path;  // INDEX_DIR/segments.sqlite
  SegmentBuildResult build;
};

// `tokenizer`: a WordPiece vocab.txt or tokenizer.json, or a folder holding one
// (wordpiece_tokenizer_file); it sets options.tokenizer_id and tokenizer_file. Errors name the
// tokenizer, the corpus or the store at fault.
SegmentCorpusResult segment_corpus(const std::string& corpus_path, const std::string& tokenizer,
                                   const std::string& index_dir, SegmentBuildOptions options,
                                   bool progress = true);

}  // namespace kvrag
