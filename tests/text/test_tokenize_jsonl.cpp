// tokenize_jsonl (`kvrag tokenize --jsonl`): one {"ids"} line per {"text"} line, each written and
// flushed before the next input line is read; a bad line stops after the earlier lines' output.
#include <gtest/gtest.h>

#include <sstream>
#include <streambuf>
#include <string>
#include <vector>

#include "support/index_test_util.h"
#include "text/tokenize_jsonl.h"

namespace kvrag {
namespace {

using test::TempDir;

// Input that hands out one line per read and notes, before each line after the first, what the
// output had received by then: what a pipe's reader would have seen.
class LineByLineInput : public std::streambuf {
 public:
  LineByLineInput(std::vector<std::string> lines, const std::stringstream& out)
      : lines_(std::move(lines)), out_(out) {}
  std::vector<std::string> seen;  // the output before lines 2, 3, …

 protected:
  int_type underflow() override {
    if (next_ == lines_.size()) return traits_type::eof();
    if (next_ > 0) seen.push_back(out_.str());
    current_ = lines_[next_++];
    setg(current_.data(), current_.data(), current_.data() + current_.size());
    return traits_type::to_int_type(current_[0]);
  }

 private:
  std::vector<std::string> lines_;
  const std::stringstream& out_;
  size_t next_ = 0;
  std::string current_;
};

TEST(TokenizeJsonl, WritesEachLineBeforeReadingTheNext) {
  TempDir dir;
  const auto tk = test::tiny_tokenizer(dir);
  std::stringstream out;
  LineByLineInput buf(
      {"{\"text\": \"the cat\"}\n", "\n", "{\"text\": \"running\"}\n", "{\"text\": \"\"}"}, out);
  std::istream in(&buf);
  EXPECT_EQ(tokenize_jsonl(*tk, in, out, "stdin"), 3);
  const std::string a = "{\"ids\": [2, 5, 6, 3]}\n", b = "{\"ids\": [2, 16, 17, 3]}\n";
  EXPECT_EQ(out.str(), a + b + "{\"ids\": [2, 3]}\n");
  EXPECT_EQ(buf.seen, (std::vector<std::string>{a, a, a + b}));

  std::stringstream raw_in("{\"text\": \"the cat\"}\n"), raw_out;
  tokenize_jsonl(*tk, raw_in, raw_out, "stdin", /*add_special=*/false);
  EXPECT_EQ(raw_out.str(), "{\"ids\": [5, 6]}\n");
}

TEST(TokenizeJsonl, ABadLineStopsAfterTheEarlierLinesOutput) {
  TempDir dir;
  const auto tk = test::tiny_tokenizer(dir);
  for (const auto& [bad, problem] : std::vector<std::pair<std::string, std::string>>{
           {"{\"text\": ", "invalid JSON"},
           {"{\"question\": \"x\"}", "expected an object with a string \"text\""},
           {"[\"text\"]", "expected an object with a string \"text\""},
           {"{\"text\": 3}", "expected an object with a string \"text\""}}) {
    SCOPED_TRACE(bad);
    std::stringstream in("{\"text\": \"the\"}\n\n{\"text\": \"cat\"}\n" + bad +
                         "\n{\"text\": \"dog\"}\n"),
        out;
    const std::string message = test::error_of([&] { tokenize_jsonl(*tk, in, out, "q.jsonl"); });
    EXPECT_EQ(message.rfind("q.jsonl: line 4: " + problem, 0), 0u) << message;
    EXPECT_EQ(out.str(), "{\"ids\": [2, 5, 3]}\n{\"ids\": [2, 6, 3]}\n");
  }
}

}  // namespace
}  // namespace kvrag
