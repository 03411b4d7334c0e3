// Cutting documents into overlapping token windows, measured with the retriever's tokenizer.
//
// A window is what the encoder sees for one segment, specials included:
//
//   prepend_title, non-empty title:  [CLS] title-tokens [SEP] text-tokens [SEP]   ≤ window
//   otherwise:                       [CLS] text-tokens [SEP]                      ≤ window
//
// so a document's text is cut into pieces of at most B text tokens, B = window − 3 − title
// tokens (or window − 2). A title longer than half the window (or one leaving no more than
// `stride` text tokens) is cut, at a token boundary, to fit; the segment stores the cut title.
//
// Stride follows Hugging Face's convention for overflowing tokens: it is the number of tokens
// consecutive windows share, so window starts advance by B − stride. Windows are cut between
// words where possible (a word = a token and its "##" continuations): a window's end moves
// back to the start of a word it would split, and the next window's start moves back to the
// start of its word, so the overlap is at least `stride` tokens and every window's text, fed to
// the tokenizer again, gives exactly the window's tokens. A single word longer than B tokens is
// cut inside.
//
// The last window covers the end of the document and is full-length: once the next window
// would reach the end, it is placed to end at the last token instead (its start moved back to
// the first word start at or after n − B), so it may overlap its predecessor by more than
// `stride`. A document of at most B text tokens is one segment; an empty (or all-whitespace)
// text gives none.
//
// A segment's text is the document text from its first token's start to its last token's end
// (Encoding offsets, in code points), so whitespace and punctuation inside it are the
// document's own and segment.text == substring(doc.text, char_begin, char_end).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "text/corpus_reader.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {

struct SegmenterOptions {
  // Tokens per window as the encoder sees it, specials and title included (see above).
  int window = 288;
  // Tokens shared by consecutive windows (Hugging Face `stride`); 0 ≤ stride.
  int stride = 64;
  bool prepend_title = true;
};

// Throws Error unless the window leaves room for at least stride + 1 text tokens
// (window ≥ stride + 4 and stride ≥ 0).
void validate(const SegmenterOptions& options);

struct Segment {
  int64_t id = -1;  // dense 0..N-1 in the segment store (assigned there)
  std::string doc_id;
  std::string title;        // the document's title (cut to fit the window if very long)
  std::string text;         // the window's text, cut from the document at token boundaries
  int32_t token_begin = 0;  // [begin, end) in the document's text tokens (no specials)
  int32_t token_end = 0;
  int32_t char_begin = 0;  // [begin, end) in Unicode code points of the document's text
  int32_t char_end = 0;

  bool operator==(const Segment& o) const {
    return id == o.id && doc_id == o.doc_id && title == o.title && text == o.text &&
           token_begin == o.token_begin && token_end == o.token_end && char_begin == o.char_begin &&
           char_end == o.char_end;
  }
};

// The text the retriever encodes for a segment: "title [SEP] text" (title first, as DPR and
// Contriever-style encoders expect; the WordPiece tokenizer turns the literal "[SEP]" into the
// special token), or the text alone when !prepend_title or the title is empty.
std::string encoder_input(const Segment& segment, bool prepend_title = true);

// Windows of `doc`, in order; id is left at -1. Throws Error on invalid UTF-8 or bad options.
std::vector<Segment> segment_document(const Document& doc, const WordPieceTokenizer& tokenizer,
                                      const SegmenterOptions& options);

}  // namespace kvrag
