// SegmentStore: round trip, metadata, BM25 ranking and query handling, reopening, and the
// errors for files that are not segment stores.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <string>
#include <thread>
#include <vector>

#include "core/atomic_file.h"
#include "index/segment_store.h"
#include "support/index_test_util.h"

namespace kvrag {
namespace {

using test::TempDir;

Segment seg(const std::string& doc_id, const std::string& title, const std::string& text) {
  Segment s;
  s.doc_id = doc_id;
  s.title = title;
  s.text = text;
  s.token_begin = 3;
  s.token_end = 9;
  s.char_begin = 10;
  s.char_end = static_cast<int32_t>(10 + text.size());
  return s;
}

std::vector<Segment> animals() {
  return {seg("a", "Cats", "The domestic cat is a small carnivorous mammal."),
          seg("b", "Dogs", "The dog is a domesticated descendant of the wolf."),
          seg("c", "Paris", "Paris is the capital and most populous city of France."),
          seg("d", "Lyon", "Lyon is a city in France on the Rhône river."),
          seg("e", "Cats and dogs", "Cats and dogs are the most popular pets; cats sleep a lot."),
          seg("f", "Café", "A café serves coffee, often with pastries.")};
}

TEST(SegmentStore, RoundTripAndDenseIds) {
  TempDir dir;
  auto store = SegmentStore::open(dir / "s.sqlite", /*create=*/true);
  EXPECT_EQ(store->size(), 0);
  auto first = animals();
  store->add_segments(first, {{"progress", "{\"offset\": 1}"}});
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(first[i].id, static_cast<int64_t>(i));
  std::vector<Segment> more = {seg("g", "", "no title \xE2\x80\x94 unicode text")};
  store->add_segments(more);
  EXPECT_EQ(more[0].id, 6);
  EXPECT_EQ(store->size(), 7);

  for (const Segment& s : first) EXPECT_EQ(store->get(s.id), s);
  EXPECT_EQ(store->get(6), more[0]);
  const auto many = store->get_many({6, 0, 3});
  ASSERT_EQ(many.size(), 3u);
  EXPECT_EQ(many[0], more[0]);
  EXPECT_EQ(many[1], first[0]);
  EXPECT_EQ(many[2], first[3]);

  EXPECT_EQ(store->meta("progress"), std::optional<std::string>("{\"offset\": 1}"));
  EXPECT_EQ(store->meta("missing"), std::nullopt);
  store->set_meta("k", "v1");
  store->set_meta("k", "v2");
  EXPECT_EQ(store->meta("k"), std::optional<std::string>("v2"));

  EXPECT_KVRAG_ERROR(store->get(7), "s.sqlite", "segment id 7 out of range", "7 segments");
  EXPECT_KVRAG_ERROR(store->get(-1), "s.sqlite", "out of range");
}

TEST(SegmentStore, ReopenKeepsEverything) {
  TempDir dir;
  auto segs = animals();
  {
    auto store = SegmentStore::open(dir / "s.sqlite", true);
    store->add_segments(segs, {{"x", "y"}});
  }
  auto store = SegmentStore::open(dir / "s.sqlite");
  EXPECT_EQ(store->size(), static_cast<int64_t>(segs.size()));
  EXPECT_EQ(store->get(4), segs[4]);
  EXPECT_EQ(store->meta("x"), std::optional<std::string>("y"));
  EXPECT_FALSE(store->bm25("paris", 3).empty());
  // Opening with create=true does not touch an existing store.
  auto again = SegmentStore::open(dir / "s.sqlite", true);
  EXPECT_EQ(again->size(), static_cast<int64_t>(segs.size()));
}

TEST(SegmentStore, Bm25Ranking) {
  TempDir dir;
  auto store = SegmentStore::open(dir / "s.sqlite", true);
  auto segs = animals();
  store->add_segments(segs);

  auto ids = [](const std::vector<ScoredSegment>& r) {
    std::vector<int64_t> out;
    for (const auto& s : r) out.push_back(s.id);
    return out;
  };
  // "cats" occurs twice in e (plus its title), once in a's title and text (stemmed: cat).
  const auto cats = store->bm25("cats", 10);
  ASSERT_EQ(cats.size(), 2u);
  EXPECT_EQ(ids(cats), (std::vector<int64_t>{4, 0}));
  EXPECT_GT(cats[0].score, cats[1].score);
  EXPECT_GT(cats[1].score, 0);

  // OR semantics: either term may match; the document with both ranks first.
  EXPECT_EQ(ids(store->bm25("Which city is on the river?", 10)).front(), 3);
  EXPECT_EQ(ids(store->bm25("capital of France", 1)), (std::vector<int64_t>{2}));
  // Titles are searched; accents are folded; stemming: "domesticated" ~ "domestic".
  EXPECT_EQ(ids(store->bm25("lyon", 5)), (std::vector<int64_t>{3}));
  EXPECT_EQ(ids(store->bm25("CAFE", 5)), (std::vector<int64_t>{5}));
  EXPECT_EQ(ids(store->bm25("rhone", 5)), (std::vector<int64_t>{3}));
  EXPECT_EQ(store->bm25("domestic", 5).size(), 2u);
  // k limits; nothing matches → empty; k ≤ 0 → empty.
  EXPECT_EQ(store->bm25("the cats and dogs", 1).size(), 1u);
  EXPECT_TRUE(store->bm25("zebra", 5).empty());
  EXPECT_TRUE(store->bm25("cats", 0).empty());

  // Scores of given segments: what bm25() ranks by, in the order asked; 0 where nothing matches.
  const auto scores = store->bm25_scores("cats", {0, 1, 4});
  ASSERT_EQ(scores.size(), 3u);
  EXPECT_FLOAT_EQ(scores[0], static_cast<float>(cats[1].score));
  EXPECT_EQ(scores[1], 0.0f);
  EXPECT_FLOAT_EQ(scores[2], static_cast<float>(cats[0].score));
  EXPECT_EQ(store->bm25_scores("zebra", {0, 4}), (std::vector<float>{0.0f, 0.0f}));
  EXPECT_TRUE(store->bm25_scores("cats", {}).empty());
}

TEST(SegmentStore, QueriesAreSanitised) {
  EXPECT_EQ(SegmentStore::query_terms("Who wrote \"Hamlet\"?"),
            (std::vector<std::string>{"wrote", "hamlet"}));
  EXPECT_EQ(SegmentStore::fts_query("NEAR(cat* OR dog) AND -mouse: ^x"),
            "\"near\" OR \"cat\" OR \"dog\" OR \"mouse\" OR \"x\"");
  // Only stop words: keep them rather than search for nothing.
  EXPECT_EQ(SegmentStore::query_terms("Who is it?"), (std::vector<std::string>{"who", "is", "it"}));
  EXPECT_EQ(SegmentStore::query_terms("Ça VA, Zürich 1990s"),
            (std::vector<std::string>{"ça", "va", "zürich", "1990s"}));
  EXPECT_TRUE(SegmentStore::query_terms(" ?! ").empty());
  EXPECT_EQ(SegmentStore::fts_query("..."), "");

  TempDir dir;
  auto store = SegmentStore::open(dir / "s.sqlite", true);
  auto segs = animals();
  store->add_segments(segs);
  // FTS5 syntax in questions must not break the query.
  for (const char* q : {"cat*", "\"unbalanced", "dogs AND", "NOT cats", "(paris", "col:paris",
                        "a OR", "NEAR(x y)", "^cats", "-", "{paris}", "'", "?"}) {
    EXPECT_NO_THROW(store->bm25(q, 5)) << q;
  }
  EXPECT_EQ(store->bm25("\"paris\"", 1).at(0).id, 2);
  EXPECT_KVRAG_ERROR(store->bm25("bad \xFF utf8", 5), "query", "invalid UTF-8");
}

TEST(SegmentStore, ConcurrentReaders) {
  TempDir dir;
  auto store = SegmentStore::open(dir / "s.sqlite", true);
  auto segs = animals();
  store->add_segments(segs);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        ok[t] += store->bm25("paris france", 2).size() == 2 && store->get(i % 6).doc_id.size() == 1;
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(ok[t], 200);
}

TEST(SegmentStore, ErrorsNameThePath) {
  TempDir dir;
  EXPECT_KVRAG_ERROR(SegmentStore::open(dir / "missing.sqlite"), "missing.sqlite", "no such file");
  EXPECT_KVRAG_ERROR(SegmentStore::open(dir.path(), true), "is a directory");

  // Not a database at all.
  test::write_text(dir / "junk.sqlite", std::string(4096, 'x') + "this is not sqlite");
  EXPECT_KVRAG_ERROR(SegmentStore::open(dir / "junk.sqlite"), "junk.sqlite",
                     "not an SQLite database");
  EXPECT_KVRAG_ERROR(SegmentStore::open(dir / "junk.sqlite", true), "junk.sqlite",
                     "not an SQLite database");

  // An empty file is an empty database: fine to create into, not a store to open.
  test::write_text(dir / "empty.sqlite", "");
  EXPECT_KVRAG_ERROR(SegmentStore::open(dir / "empty.sqlite"), "empty.sqlite",
                     "not a kvrag segment store");

  // An SQLite database with other tables.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "other.sqlite").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);", nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
  }
  EXPECT_KVRAG_ERROR(SegmentStore::open(dir / "other.sqlite", true), "other.sqlite",
                     "not a kvrag segment store", "no table 'segments'");

  // A store whose file was damaged after it was written.
  {
    auto store = SegmentStore::open(dir / "s.sqlite", true);
    auto segs = animals();
    store->add_segments(segs);
  }
  {
    std::string bytes = read_file(dir / "s.sqlite");
    ASSERT_GT(bytes.size(), 8192u);
    for (size_t i = 100; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7);
    test::write_text(dir / "s.sqlite", bytes);
  }
  const std::string msg = test::error_of([&] {
    auto store = SegmentStore::open(dir / "s.sqlite");
    store->get(0);
    store->bm25("cats", 3);
  });
  EXPECT_NE(msg.find("s.sqlite"), std::string::npos) << msg;
}

}  // namespace
}  // namespace kvrag
