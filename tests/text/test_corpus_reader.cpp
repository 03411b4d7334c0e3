// CorpusReader: JSONL and DPR TSV, bad lines (counted, or thrown when strict), resume.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "support/index_test_util.h"
#include "text/corpus_reader.h"

namespace kvrag {
namespace {

using test::TempDir;
using test::write_text;

std::vector<Document> read_all(CorpusReader& reader) {
  std::vector<Document> docs;
  for (Document d; reader.next(d);) docs.push_back(d);
  return docs;
}

TEST(CorpusReader, JsonlNumberAndStringIds) {
  TempDir dir;
  write_text(dir / "c.jsonl",
             "\xEF\xBB\xBF{\"id\": 7, \"title\": \"Seven\", \"text\": \"Seven is a "
             "number.\"}\n{\"id\": \"doc-8\", \"text\": \"No title here.\"}\r\n\n{\"id\": 9, "
             "\"title\": null, \"text\": \"Caf\xC3\xA9 \\\"quoted\\\"\"}");  // no final \n
  CorpusReader reader(dir / "c.jsonl");
  EXPECT_EQ(reader.format(), CorpusFormat::kJsonl);
  const auto docs = read_all(reader);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].id, "7");
  EXPECT_EQ(docs[0].title, "Seven");
  EXPECT_EQ(docs[0].text, "Seven is a number.");
  EXPECT_EQ(docs[0].line, 1);
  EXPECT_EQ(docs[1].id, "doc-8");
  EXPECT_EQ(docs[1].title, "");
  EXPECT_EQ(docs[1].line, 2);
  EXPECT_EQ(docs[2].id, "9");
  EXPECT_EQ(docs[2].text, "Caf\xC3\xA9 \"quoted\"");
  EXPECT_EQ(docs[2].line, 4);
  EXPECT_EQ(reader.stats().lines, 4);
  EXPECT_EQ(reader.stats().documents, 3);
  EXPECT_EQ(reader.stats().bad_lines, 0);
  EXPECT_EQ(reader.bytes_read(), reader.file_size());
}

TEST(CorpusReader, JsonlBadLinesAreCountedWithLineNumbers) {
  TempDir dir;
  write_text(
      dir / "c.jsonl",
      "{\"id\": 1, \"text\": \"good one\"}\n{\"id\": 2, \"text\": \"broken\"\n"  // 2: invalid JSON
      "{\"id\": 3, \"text\": \"bad \xFF byte\"}\n"                               // 3: invalid UTF-8
      "{\"id\": 4, \"title\": \"t\"}\n"                                          // 4: missing text
      "{\"id\": 5, \"text\": \"  \"}\n"                                          // 5: empty text
      "[1, 2, 3]\n"                                                              // 6: not an object
      "{\"text\": \"no id\"}\n"                                                  // 7: missing id
      "{\"id\": 8, \"text\": 42}\n"  // 8: text not a string
      "{\"id\": 9, \"text\": \"good two\"}\n");
  CorpusReader reader(dir / "c.jsonl");
  const auto docs = read_all(reader);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[1].id, "9");
  const CorpusStats& s = reader.stats();
  EXPECT_EQ(s.lines, 9);
  EXPECT_EQ(s.documents, 2);
  EXPECT_EQ(s.bad_lines, 7);
  ASSERT_EQ(s.bad_examples.size(), 7u);
  const std::vector<std::pair<int64_t, std::string>> expected = {{2, "invalid JSON"},
                                                                 {3, "invalid UTF-8 at byte 23"},
                                                                 {4, "missing \"text\""},
                                                                 {5, "empty \"text\""},
                                                                 {6, "not a JSON object"},
                                                                 {7, "missing \"id\""},
                                                                 {8, "\"text\" is not a string"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(s.bad_examples[i].first, expected[i].first);
    EXPECT_NE(s.bad_examples[i].second.find(expected[i].second), std::string::npos)
        << s.bad_examples[i].second;
  }
}

TEST(CorpusReader, KeepsOnlyTheFirstTwentyBadExamples) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 30; ++i) text += "not json\n";
  write_text(dir / "c.jsonl", text);
  CorpusReader reader(dir / "c.jsonl", CorpusFormat::kAuto, /*strict=*/false,
                      /*allow_empty=*/true);
  EXPECT_TRUE(read_all(reader).empty());
  EXPECT_EQ(reader.stats().bad_lines, 30);
  ASSERT_EQ(reader.stats().bad_examples.size(), CorpusStats::kMaxBadExamples);
  EXPECT_EQ(reader.stats().bad_examples.back().first, 20);
}

TEST(CorpusReader, NoDocumentsIsAnErrorAtTheEndUnlessAllowed) {
  TempDir dir;
  write_text(dir / "empty.jsonl", "");
  write_text(dir / "blank.jsonl", "\n \r\n\n");
  write_text(dir / "header.tsv", "id\ttext\ttitle\n\n");
  write_text(dir / "bad.jsonl", "not json\n\n{\"id\": 2}\n");
  for (const auto& [name, why] : std::vector<std::pair<std::string, std::string>>{
           {"empty.jsonl", "the file is empty"},
           {"blank.jsonl", "the file has only blank lines"},
           {"header.tsv", "the file has only its TSV header"},
           {"bad.jsonl", "all 2 document lines are bad; the first, line 1: invalid JSON"}}) {
    SCOPED_TRACE(name);
    CorpusReader reader(dir / name);
    Document d;
    const std::string message = test::error_of([&] { reader.next(d); });
    EXPECT_EQ(message.rfind("corpus " + (dir / name) + ": no documents (" + why, 0), 0u) << message;
    EXPECT_NE(message.find("); pass --allow-empty to accept"), std::string::npos) << message;

    CorpusReader allowed(dir / name, CorpusFormat::kAuto, /*strict=*/false,
                         /*allow_empty=*/true);
    EXPECT_TRUE(read_all(allowed).empty());
  }
  // One document is enough, wherever it is; a resumed reader counts the documents before it.
  write_text(dir / "one.jsonl", "\nnot json\n{\"id\": 3, \"text\": \"three\"}\n");
  CorpusReader one(dir / "one.jsonl");
  EXPECT_EQ(read_all(one).size(), 1u);
  CorpusReader rest(dir / "one.jsonl");
  rest.resume_at(one.bytes_read(), one.stats());
  EXPECT_TRUE(read_all(rest).empty());
}

TEST(CorpusReader, StrictThrowsNamingFileAndLine) {
  TempDir dir;
  write_text(dir / "c.jsonl", "{\"id\": 1, \"text\": \"fine\"}\n{\"id\": 2}\n");
  CorpusReader reader(dir / "c.jsonl", CorpusFormat::kAuto, /*strict=*/true);
  Document d;
  ASSERT_TRUE(reader.next(d));
  EXPECT_KVRAG_ERROR(reader.next(d), "c.jsonl", "line 2", "missing \"text\"");

  write_text(dir / "d.tsv", "id\ttext\ttitle\n1\tonly two columns\n");
  CorpusReader tsv(dir / "d.tsv", CorpusFormat::kAuto, true);
  EXPECT_KVRAG_ERROR(tsv.next(d), "d.tsv", "line 2", "expected 3 tab-separated columns, got 2");
}

TEST(CorpusReader, DprTsvWithQuotes) {
  TempDir dir;
  write_text(dir / "psgs.tsv",
             "id\ttext\ttitle\n1\t\"Aaron ( or ; \"\"Ah\xC3\xA4r\xC3\xB4n\"\") is a "
             "prophet\"\tAaron\n2\tplain text\t\"Quoted \"\"Title\"\"\"\n3\t\"tab\tinside "
             "quotes\"\tT3\r\n4\t\"unterminated\tT4\n5\ttoo\tmany\tcolumns\n6\t\tempty "
             "text\n7\tlast\tT7\n");
  CorpusReader reader(dir / "psgs.tsv");
  EXPECT_EQ(reader.format(), CorpusFormat::kTsv);
  const auto docs = read_all(reader);
  ASSERT_EQ(docs.size(), 4u);
  EXPECT_EQ(docs[0].id, "1");
  EXPECT_EQ(docs[0].text, "Aaron ( or ; \"Ah\xC3\xA4r\xC3\xB4n\") is a prophet");
  EXPECT_EQ(docs[0].title, "Aaron");
  EXPECT_EQ(docs[0].line, 2);
  EXPECT_EQ(docs[1].title, "Quoted \"Title\"");
  EXPECT_EQ(docs[2].text, "tab\tinside quotes");
  EXPECT_EQ(docs[2].title, "T3");
  EXPECT_EQ(docs[3].id, "7");
  EXPECT_EQ(docs[3].line, 8);
  const CorpusStats& s = reader.stats();
  EXPECT_EQ(s.bad_lines, 3);
  ASSERT_EQ(s.bad_examples.size(), 3u);
  EXPECT_EQ(s.bad_examples[0].first, 5);
  EXPECT_EQ(s.bad_examples[0].second, "unterminated quoted field");
  EXPECT_EQ(s.bad_examples[1].first, 6);
  EXPECT_EQ(s.bad_examples[2].first, 7);
  EXPECT_EQ(s.bad_examples[2].second, "empty text");
}

TEST(CorpusReader, TsvHeaderDecidesColumnOrder) {
  TempDir dir;
  write_text(dir / "a.tsv", "id\ttitle\ttext\n1\tThe Title\tThe text.\n");
  CorpusReader reader(dir / "a.tsv");
  auto docs = read_all(reader);
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].title, "The Title");
  EXPECT_EQ(docs[0].text, "The text.");

  // No header: id, text, title.
  write_text(dir / "b.txt", "1\tThe text.\tThe Title\n");
  CorpusReader plain(dir / "b.txt", CorpusFormat::kTsv);
  docs = read_all(plain);
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].text, "The text.");
  EXPECT_EQ(docs[0].line, 1);

  write_text(dir / "c.tsv", "id\tbody\tname\n1\tx\ty\n");
  EXPECT_KVRAG_ERROR(CorpusReader(dir / "c.tsv"), "c.tsv", "line 1", "id, text and title");
}

TEST(CorpusReader, ResumeContinuesAtARecordedOffset) {
  for (const char* name : {"c.jsonl", "c.tsv"}) {
    SCOPED_TRACE(name);
    TempDir dir;
    const bool tsv = std::string(name) == "c.tsv";
    std::string text = tsv ? "id\ttext\ttitle\n" : "";
    for (int i = 0; i < 10; ++i) {
      if (i == 4) text += tsv ? "broken line\n" : "{broken\n";
      text += tsv ? std::to_string(i) + "\ttext " + std::to_string(i) + "\tT\n"
                  : "{\"id\": " + std::to_string(i) + ", \"text\": \"text " + std::to_string(i) +
                        "\"}\n";
    }
    write_text(dir / name, text);
    CorpusReader full(dir / name);
    const auto all = read_all(full);
    ASSERT_EQ(all.size(), 10u);

    // Read three documents, remember where, continue with a new reader.
    CorpusReader first(dir / name);
    Document d;
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(first.next(d));
    const int64_t offset = first.bytes_read();
    CorpusReader second(dir / name);
    second.resume_at(offset, first.stats());
    const auto rest = read_all(second);
    ASSERT_EQ(rest.size(), 7u);
    for (size_t i = 0; i < rest.size(); ++i) {
      EXPECT_EQ(rest[i].id, all[i + 3].id);
      EXPECT_EQ(rest[i].line, all[i + 3].line);
    }
    EXPECT_EQ(second.stats().lines, full.stats().lines);
    EXPECT_EQ(second.stats().documents, full.stats().documents);
    EXPECT_EQ(second.stats().bad_lines, 1);
    EXPECT_EQ(second.stats().bad_examples, full.stats().bad_examples);

    CorpusReader third(dir / name);
    EXPECT_KVRAG_ERROR(third.resume_at(full.file_size() + 1, {}), name, "cannot resume");
  }
}

TEST(CorpusReader, MissingFileAndFormatNames) {
  TempDir dir;
  EXPECT_KVRAG_ERROR(CorpusReader(dir / "nope.jsonl"), "nope.jsonl", "cannot open");
  EXPECT_KVRAG_ERROR(CorpusReader(dir.path()), "is a directory");
  EXPECT_EQ(parse_corpus_format("tsv"), CorpusFormat::kTsv);
  EXPECT_EQ(parse_corpus_format("jsonl"), CorpusFormat::kJsonl);
  EXPECT_EQ(parse_corpus_format("auto"), CorpusFormat::kAuto);
  EXPECT_KVRAG_ERROR(parse_corpus_format("csv"), "unknown corpus format 'csv'");
}

}  // namespace
}  // namespace kvrag
