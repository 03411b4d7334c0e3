#include "index/block_checksum.h"

#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"

namespace kvrag {

namespace {

constexpr const char* kFormat = "kvrag-block-checksum-1";
constexpr const char* kHash = "fnv1a64-words";

uint64_t hash_block(const void* data, size_t n) {
  Fnv1a64 h;
  h.add_words(data, n);
  return h.value();
}

std::string hex(uint64_t v) { return fmt::format("{:016x}", v); }

// 16 lowercase hex digits → value; false otherwise.
bool parse_hex(const std::string& s, uint64_t* out) {
  if (s.size() != 16) return false;
  uint64_t v = 0;
  for (const char c : s) {
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = v << 4 | uint64_t(d);
  }
  *out = v;
  return true;
}

}  // namespace

void BlockChecksummer::add(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  sum_.file_bytes += n;
  while (n > 0) {
    if (buffer_.empty() && n >= sum_.block_bytes) {  // whole blocks straight from the caller
      sum_.blocks.push_back(hash_block(p, sum_.block_bytes));
      p += sum_.block_bytes;
      n -= sum_.block_bytes;
      continue;
    }
    const size_t take = std::min<size_t>(n, sum_.block_bytes - buffer_.size());
    buffer_.insert(buffer_.end(), p, p + take);
    p += take;
    n -= take;
    if (buffer_.size() == sum_.block_bytes) flush();
  }
}

void BlockChecksummer::flush() {
  sum_.blocks.push_back(hash_block(buffer_.data(), buffer_.size()));
  buffer_.clear();
}

BlockChecksum BlockChecksummer::finish() {
  if (!buffer_.empty()) flush();
  return std::move(sum_);
}

std::string checksum_path(const std::string& file) { return file + ".sum"; }

void write_checksum(const std::string& file, const BlockChecksum& sum) {
  nlohmann::json blocks = nlohmann::json::array();
  for (const uint64_t b : sum.blocks) blocks.push_back(hex(b));
  const nlohmann::json j = {{"format", kFormat},
                            {"hash", kHash},
                            {"block_bytes", sum.block_bytes},
                            {"file_bytes", sum.file_bytes},
                            {"blocks", std::move(blocks)}};
  write_file_atomic(checksum_path(file), j.dump() + "\n");
}

std::optional<BlockChecksum> read_checksum(const std::string& file) {
  const std::string path = checksum_path(file);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  const std::string text = read_file(path);  // its Error names the file
  BlockChecksum sum;
  try {
    const auto j = nlohmann::json::parse(text);
    KVRAG_CHECK(j.is_object() && j.value("format", "") == kFormat,
                "not a kvrag checksum file (expected \"format\": \"{}\")", kFormat);
    KVRAG_CHECK(j.value("hash", "") == kHash, "hash \"{}\" is not supported (expected \"{}\")",
                j.value("hash", ""), kHash);
    sum.block_bytes = j.at("block_bytes").get<uint64_t>();
    sum.file_bytes = j.at("file_bytes").get<uint64_t>();
    KVRAG_CHECK(sum.block_bytes > 0 && sum.block_bytes % 8 == 0 && sum.block_bytes <= (1u << 30),
                "block_bytes {} is not a positive multiple of 8", sum.block_bytes);
    const auto& blocks = j.at("blocks");
    const uint64_t expected = (sum.file_bytes + sum.block_bytes - 1) / sum.block_bytes;
    KVRAG_CHECK(blocks.is_array() && blocks.size() == expected,
                "expected {} block hashes for {} bytes, found {}", expected, sum.file_bytes,
                blocks.is_array() ? blocks.size() : 0);
    sum.blocks.resize(blocks.size());
    for (size_t i = 0; i < blocks.size(); ++i) {
      KVRAG_CHECK(blocks[i].is_string() && parse_hex(blocks[i].get<std::string>(), &sum.blocks[i]),
                  "block {}: expected 16 lowercase hex digits, found {}", i, blocks[i].dump());
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: malformed checksum file: {}", path, e.what());
  } catch (Error& e) {
    throw e.with_context(path);
  }
  return sum;
}

uint64_t verify_blocks(const std::string& file, uint64_t file_bytes, const BlockChecksum& sum,
                       const std::vector<size_t>& which, const ReadBytes& read, bool advise) {
  const std::string changed =
      advise ? ": the file changed after `kvrag embed` wrote it; rerun kvrag embed to re-embed "
               "this shard"
             : "";
  KVRAG_CHECK(file_bytes == sum.file_bytes, "{}: {} bytes, but {} were recorded in {}{}", file,
              file_bytes, sum.file_bytes, checksum_path(file), changed);
  std::vector<unsigned char> buf;
  uint64_t read_bytes = 0;
  for (const size_t i : which) {
    KVRAG_CHECK(i < sum.blocks.size(), "{}: block {} out of range ({} blocks)", file, i,
                sum.blocks.size());
    const uint64_t begin = sum.block_begin(i), end = sum.block_end(i);
    buf.resize(end - begin);
    read(begin, buf.size(), buf.data());
    read_bytes += buf.size();
    const uint64_t found = hash_block(buf.data(), buf.size());
    KVRAG_CHECK(found == sum.blocks[i],
                "{}: checksum mismatch in bytes [{}, {}) (recorded {}, found {}){}", file, begin,
                end, hex(sum.blocks[i]), hex(found), changed);
  }
  return read_bytes;
}

}  // namespace kvrag
