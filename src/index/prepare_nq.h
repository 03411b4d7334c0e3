// Natural Questions (simplified format) → a corpus for `kvrag segment` and question files for
// `kvrag train-retriever`, `eval-retrieval` and `eval` (`kvrag prepare-nq`).
//
// Input: one JSON object per line (plain or gzip; core/line_reader.h), as in
// simplified-nq-train.jsonl.gz:
//   {"example_id", "question_text", "document_url", "document_text" (space-separated tokens,
//    HTML tags such as <P> or </Td> among them), "long_answer_candidates",
//    "annotations": [{"long_answer": {"start_token", "end_token", "candidate_index"},
//                     "short_answers": [{"start_token", "end_token"}],
//                     "yes_no_answer": "NONE" | "YES" | "NO"}]}
// Token spans are [start_token, end_token); a missing long answer has candidate_index -1.
//
// Output, in `out_dir` (created if missing), every file written atomically at the end (an
// interrupted run leaves none of them, or the previous ones, behind):
//   corpus.jsonl          {"id": N, "title", "text"}: one document per distinct document_url, in
//                         order of first appearance (ids 0, 1, …); text = the tokens that are not
//                         tags; title from the URL (nq_title_from_url)
//   passages.jsonl        {"id": "N:START-END", "title", "text"}: the gold long answers, tags
//                         stripped, one per distinct span (the passages of train-retriever)
//   questions-train.jsonl {"question", "answers", "gold_passage_id": "N:START-END",
//   questions-dev.jsonl    "document_id": N, "example_id"}: answers = the short answers' text
//                         (tags stripped, every annotation, duplicates dropped), or "yes" / "no";
//                         empty when the gold annotation has neither
// The gold long answer is that of the first annotation that has one. gold_passage_id names a
// passage of passages.jsonl (train-retriever, train-prefix --oracle, and gold recall over an
// index of passages.jsonl); document_id names the corpus document it comes from.
//
// Streaming: one line in memory at a time; only the URL → document id map and the set of
// passage ids grow with the input.
//
// Split: an example goes to dev when a hash of (seed, example_id) falls below 1 - train_fraction
// (nq_is_dev): deterministic, independent of the order and of the other examples.
//
// Skipped examples, counted by reason: "malformed line" (not JSON, or a field missing or of the
// wrong type; the first line number is kept), "empty question", "no long answer" (no annotation
// has one), "bad span" (a long or short answer outside the document's tokens, or empty),
// "empty long answer" (only tags in it). A file without a single valid line (empty, or nothing
// but malformed lines) is an Error naming it; so is a missing file.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace kvrag {

struct PrepareNqOptions {
  double train_fraction = 0.95;  // (0, 1]: the rest goes to dev
  uint64_t seed = 0;
  bool progress = true;  // a progress line on stderr
};

struct PrepareNqResult {
  int64_t lines = 0;  // lines read (blank ones included)
  int64_t train = 0, dev = 0;
  int64_t documents = 0;                   // corpus.jsonl lines
  int64_t passages = 0;                    // passages.jsonl lines
  int64_t without_answers = 0;             // kept questions with neither short nor yes/no answer
  std::map<std::string, int64_t> skipped;  // reason → examples
  int64_t first_malformed_line = 0;        // 0 if none
  std::string first_malformed_reason;      // why that line is malformed
  std::string corpus_path, passages_path, train_path, dev_path;

  int64_t total_skipped() const;
};

PrepareNqResult prepare_nq(const std::string& input, const std::string& out_dir,
                           const PrepareNqOptions& options = {});

// "https://en.wikipedia.org//w/index.php?title=Some_Title&amp;oldid=1" and
// "https://en.wikipedia.org/wiki/Some_Title" → "Some Title": the title= query value, else the
// part after /wiki/, else the last path part; %xx decoded, '_' → ' '.
std::string nq_title_from_url(const std::string& url);

// Whether `token` is an HTML tag of NQ's document_text: "<...>".
bool nq_is_tag(const std::string& token);

// Whether the example goes to dev (see the split above).
bool nq_is_dev(const std::string& example_id, uint64_t seed, double train_fraction);

}  // namespace kvrag
