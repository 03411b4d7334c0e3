// LineReader: lines of plain and gzip files alike, line ends, truncated gzip, missing files.
#include "core/line_reader.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <fstream>
#include <string>
#include <vector>

#include "support/test_support.h"

namespace kvrag {
namespace {

std::vector<std::string> read_all(const std::string& path) {
  LineReader reader(path);
  std::vector<std::string> lines;
  for (std::string line; reader.next(line);) lines.push_back(line);
  EXPECT_EQ(reader.line_number(), static_cast<int64_t>(lines.size()));
  EXPECT_EQ(reader.bytes_read(), reader.file_size());
  return lines;
}

void write_plain(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

TEST(LineReader, PlainAndGzipGiveTheSameLines) {
  test::TempDir dir;
  const std::string long_line(600000, 'x');  // longer than one read chunk
  const std::string text = "one\r\ntwo\n\n" + long_line + "\nlast without newline";
  const std::vector<std::string> want = {"one", "two", "", long_line, "last without newline"};
  write_plain(dir / "a.txt", text);
  write_gzip(dir / "a.txt.gz", text);
  EXPECT_EQ(read_all(dir / "a.txt"), want);
  EXPECT_EQ(read_all(dir / "a.txt.gz"), want);
  write_plain(dir / "empty.txt", "");
  EXPECT_TRUE(read_all(dir / "empty.txt").empty());
}

TEST(LineReader, TruncatedGzipAndMissingFilesAreErrors) {
  test::TempDir dir;
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "line " + std::to_string(i * 7919 % 10007) + "\n";
  write_gzip(dir / "a.gz", text);
  std::ifstream in(dir / "a.gz", std::ios::binary);
  std::string gz((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_plain(dir / "cut.gz", gz.substr(0, gz.size() / 2));
  const std::string msg = test::error_of([&] { read_all(dir / "cut.gz"); });
  EXPECT_NE(msg.find("cut.gz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  const std::string missing = test::error_of([&] { LineReader r(dir / "missing.txt"); });
  EXPECT_NE(missing.find("missing.txt: cannot open"), std::string::npos) << missing;
}

}  // namespace
}  // namespace kvrag
