// Cutting documents into overlapping token windows, measured with the retriever's tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "index/corpus_reader.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {

struct SegmenterOptions {
  // Tokens per window as the encoder sees it: [CLS] + title + [SEP] + text tokens + [SEP] ≤ window.
  int window = 288;
  // Tokens shared by consecutive windows (Hugging Face's `stride` for overflowing tokens): window
  // starts advance by (text tokens per window − stride).
  int stride = 64;
  bool prepend_title = true;
};

struct Segment {
  int64_t id = -1;            // dense 0..N-1 in the segment store (assigned there)
  std::string doc_id;
  std::string title;
  std::string text;           // the window's text, cut from the document at token boundaries
  int32_t token_begin = 0;    // [begin, end) in the document's text tokens (no specials)
  int32_t token_end = 0;
  int32_t char_begin = 0;     // [begin, end) in Unicode code points of the document's text
  int32_t char_end = 0;
};

// The text the retriever encodes for a segment: "title [SEP] text" (title first, as DPR and
// Contriever-style encoders expect), or the text alone.
std::string encoder_input(const Segment& segment, bool prepend_title = true);

// Windows of `doc`. A document shorter than one window gives one segment; an empty text none.
std::vector<Segment> segment_document(const Document& doc, const WordPieceTokenizer& tokenizer,
                                      const SegmenterOptions& options);

}  // namespace kvrag
