// ProgressReporter (core/progress.h): the status line and the rate limit. Lives with the index
// tests because `kvrag segment` is its first user.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "core/progress.h"

namespace kvrag {
namespace {

std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
  return s;
}

TEST(Progress, Formatting) {
  EXPECT_EQ(format_count(0), "0");
  EXPECT_EQ(format_count(999), "999");
  EXPECT_EQ(format_count(1234567), "1,234,567");
  EXPECT_EQ(format_count(-1000), "-1,000");
  EXPECT_EQ(format_bytes(17), "17 B");
  EXPECT_EQ(format_bytes(1536), "1.5 KiB");
  EXPECT_EQ(format_bytes(int64_t{13} << 30), "13.0 GiB");
  EXPECT_EQ(format_duration(42.2), "42s");
  EXPECT_EQ(format_duration(17 * 60 + 3), "17m03s");
  EXPECT_EQ(format_duration(3600 + 120 + 30), "1h02m");
  EXPECT_EQ(format_duration(-1), "?");

  ProgressOptions o;
  o.label = "segment";
  o.unit = "documents";
  o.total_bytes = int64_t{1} << 30;
  o.out = nullptr;
  ProgressReporter p(o);
  EXPECT_EQ(p.format(int64_t{512} << 20, 1000, 10.0),
            "segment: 1,000 documents (100/s)  512.0 MiB / 1.0 GiB (50.0%)  ETA 10s");
  // A resumed run: rates and ETA count only this run's work.
  o.start_bytes = int64_t{768} << 20;
  o.start_items = 5000;
  ProgressReporter resumed(o);
  EXPECT_EQ(resumed.format(int64_t{896} << 20, 5500, 10.0),
            "segment: 5,500 documents (50/s)  896.0 MiB / 1.0 GiB (87.5%)  ETA 10s");
  o.total_bytes = 0;
  ProgressReporter unknown(o);
  EXPECT_EQ(unknown.format(100, 7, 0.0), "segment: 7 documents");
}

// Slow items (training steps) get a rate with decimals, and the note follows the status.
TEST(Progress, SlowRatesAndNotes) {
  ProgressOptions o;
  o.label = "train";
  o.unit = "steps";
  o.total_items = 100;
  o.out = nullptr;
  ProgressReporter p(o);
  p.set_note("loss 2.31");
  EXPECT_EQ(p.format(0, 12, 10.0), "train: 12 steps (1.2/s) of 100 (12.0%)  ETA 1m13s  loss 2.31");
  EXPECT_EQ(p.format(0, 1, 20.0), "train: 1 steps (0.05/s) of 100 (1.0%)  ETA 33m00s  loss 2.31");
}

TEST(Progress, RateLimitedLinesWhenNotATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  ProgressOptions o;
  o.label = "job";
  o.total_bytes = 100;
  o.out = f;
  {
    ProgressReporter p(o);  // not a terminal: one line every 5 s
    for (int i = 0; i < 1000; ++i) p.update(i % 100, i);
    p.finish(100, 1000);
  }
  const std::string s = contents(f);
  std::fclose(f);
  EXPECT_EQ(s.find('\r'), std::string::npos);
  EXPECT_EQ(s.rfind("job: 1,000 items", 0), 0u) << s;
  EXPECT_NE(s.find("100 B / 100 B (100.0%)\n"), std::string::npos) << s;
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 1) << s;
}

}  // namespace
}  // namespace kvrag
