// The corpus reader (text/corpus_reader.h) on arbitrary bytes as a JSONL and as a TSV corpus,
// reading to the end, then again from the middle through resume_at().
#include "core/error.h"
#include "fuzz_entry.h"
#include "fuzz_support.h"
#include "text/corpus_reader.h"

namespace {

void read_corpus(const std::string& path, kvrag::CorpusFormat format) {
  int64_t resume_offset = -1;
  kvrag::CorpusStats resume_stats;
  int64_t documents = 0;
  try {
    kvrag::CorpusReader reader(path, format, /*strict=*/false, /*allow_empty=*/true);
    kvrag::Document doc;
    while (reader.next(doc)) {
      KVRAG_FUZZ_ASSERT(!doc.id.empty() && !doc.text.empty());
      KVRAG_FUZZ_ASSERT(reader.bytes_read() <= reader.file_size());
      if (++documents == 1) {
        resume_offset = reader.bytes_read();
        resume_stats = reader.stats();
      }
    }
    KVRAG_FUZZ_ASSERT(reader.stats().documents == documents);
  } catch (const kvrag::Error&) {
    return;
  }
  if (resume_offset < 0) return;
  // After the first document, a resumed reader sees the rest: documents - 1 of them.
  try {
    kvrag::CorpusReader reader(path, format, false, true);
    reader.resume_at(resume_offset, resume_stats);
    kvrag::Document doc;
    int64_t rest = 0;
    while (reader.next(doc)) ++rest;
    KVRAG_FUZZ_ASSERT(rest == documents - 1);
  } catch (const kvrag::Error&) {
  }
}

}  // namespace

KVRAG_FUZZ_TARGET {
  read_corpus(kvrag_fuzz::input_file(data, size, ".jsonl"), kvrag::CorpusFormat::kJsonl);
  read_corpus(kvrag_fuzz::input_file(data, size, ".tsv"), kvrag::CorpusFormat::kTsv);
  return 0;
}
