// Safetensors reader and writer: round trips, every validation error, real HF files.
#include "checkpoint/safetensors.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "support/checkpoint_test_util.h"
#include "support/test_support.h"

using kvrag::DType;
using kvrag::SafetensorsFile;
using kvrag::TensorToWrite;
using kvrag::test::raw_safetensors;
using kvrag::test::TempDir;
using kvrag::test::write_bytes;

namespace {

// Writes a raw file and returns its path.
std::string raw_file(const TempDir& tmp, const std::string& header, const std::string& data = "",
                     uint64_t header_length = UINT64_MAX) {
  std::string path = tmp / "t.safetensors";
  write_bytes(path, raw_safetensors(header, data, header_length));
  return path;
}

bool same_bytes(const kvrag::TensorInfo& t, const void* expected, size_t n) {
  return t.nbytes == n && (n == 0 || std::memcmp(t.data, expected, n) == 0);
}

}  // namespace

// --- dtypes ------------------------------------------------------------------------------------

TEST(Safetensors, DTypeNamesAndSizes) {
  struct Case {
    DType dtype;
    const char* name;
    size_t size;
  };
  for (Case c : {Case{DType::F64, "F64", 8}, Case{DType::F32, "F32", 4}, Case{DType::F16, "F16", 2},
                 Case{DType::BF16, "BF16", 2}, Case{DType::I64, "I64", 8},
                 Case{DType::I32, "I32", 4}, Case{DType::I16, "I16", 2}, Case{DType::I8, "I8", 1},
                 Case{DType::U8, "U8", 1}, Case{DType::BOOL, "BOOL", 1}}) {
    EXPECT_STREQ(kvrag::dtype_name(c.dtype), c.name);
    EXPECT_EQ(kvrag::dtype_size(c.dtype), c.size);
    EXPECT_EQ(kvrag::parse_dtype(c.name), c.dtype);
  }
  EXPECT_FALSE(kvrag::parse_dtype("f32"));
  EXPECT_FALSE(kvrag::parse_dtype("F8_E4M3"));
  EXPECT_FALSE(kvrag::parse_dtype(""));
  EXPECT_EQ(kvrag::shape_string({2, 3}), "[2, 3]");
  EXPECT_EQ(kvrag::shape_string({}), "[]");
}

// --- writer + reader round trip ------------------------------------------------------------------

struct RoundTripData {
  std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 1e-30f, -7.0f};             // [2, 3]
  std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x7bff, 0x0001};                   // [4]
  std::vector<uint16_t> bf16 = {0x3f80, 0xbf80, 0x4049, 0x0000, 0x7f80, 0xff80};  // [3, 2]
  std::vector<int64_t> i64 = {INT64_MIN, -1, 0, 42, INT64_MAX};                   // [5]
  std::vector<uint8_t> u8 = {7};                                                  // [] scalar

  std::vector<TensorToWrite> tensors() const {
    return {
        {"w.f32", DType::F32, {2, 3}, f32.data()},    {"w.f16", DType::F16, {4}, f16.data()},
        {"w.bf16", DType::BF16, {3, 2}, bf16.data()}, {"ids.i64", DType::I64, {5}, i64.data()},
        {"empty", DType::F32, {0, 8}, nullptr},       {"scalar", DType::U8, {}, u8.data()},
    };
  }
};

TEST(Safetensors, RoundTrip) {
  TempDir tmp;
  std::string path = tmp / "rt.safetensors";
  RoundTripData d;
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "héllo \"quoted\""}};
  kvrag::write_safetensors(path, d.tensors(), metadata);

  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->path(), path);
  EXPECT_EQ(f->metadata(), metadata);
  ASSERT_EQ(f->tensors().size(), 6u);

  // Data-area order is the write order (the zero-byte tensor sorts by its offset).
  std::vector<std::string> order;
  for (const auto& t : f->tensors()) order.push_back(t.name);
  EXPECT_EQ(order,
            (std::vector<std::string>{"w.f32", "w.f16", "w.bf16", "ids.i64", "empty", "scalar"}));

  const kvrag::TensorInfo* t = f->find("w.f32");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::F32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t->numel(), 6);
  EXPECT_TRUE(same_bytes(*t, d.f32.data(), 24));

  t = f->find("w.f16");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::F16);
  EXPECT_TRUE(same_bytes(*t, d.f16.data(), 8));

  t = f->find("w.bf16");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::BF16);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{3, 2}));
  EXPECT_TRUE(same_bytes(*t, d.bf16.data(), 12));

  t = f->find("ids.i64");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::I64);
  EXPECT_TRUE(same_bytes(*t, d.i64.data(), 40));

  t = f->find("empty");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->numel(), 0);
  EXPECT_EQ(t->nbytes, 0u);

  t = f->find("scalar");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, std::vector<int64_t>{});
  EXPECT_EQ(t->numel(), 1);
  EXPECT_TRUE(same_bytes(*t, d.u8.data(), 1));

  EXPECT_EQ(f->find("nope"), nullptr);
}

TEST(Safetensors, WriterLayout) {
  TempDir tmp;
  std::string path = tmp / "layout.safetensors";
  RoundTripData d;
  kvrag::write_safetensors(path, d.tensors());
  std::string bytes = kvrag::read_file(path);

  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  EXPECT_EQ((8 + n) % 8, 0u) << "header must be padded to a multiple of 8";
  std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.find("__metadata__"), std::string::npos);  // none given, none written
  // Trailing padding is spaces only.
  size_t close = header.find_last_of('}');
  EXPECT_EQ(header.find_first_not_of(' ', close + 1), std::string::npos);
  // Data is contiguous: 24 + 8 + 12 + 40 + 0 + 1 bytes.
  EXPECT_EQ(bytes.size(), 8 + n + 85);
  EXPECT_EQ(std::memcmp(bytes.data() + 8 + n, d.f32.data(), 24), 0);
}

// A tensor given by a fill function (made when it is written) lands in its place like one given
// by a pointer.
TEST(Safetensors, WriterFillsTensorsMadeOnTheFly) {
  TempDir tmp;
  std::string path = tmp / "fill.safetensors";
  const std::vector<int8_t> first = {1, -2, 3, -4, 5, -6};
  int calls = 0;
  kvrag::write_safetensors(path, {{"a", DType::I8, {2, 3}, first.data()},
                                  {"b", DType::I8, {3, 2}, nullptr, [&](void* out) {
                                     ++calls;
                                     for (int i = 0; i < 6; ++i)
                                       static_cast<int8_t*>(out)[i] = 10 * i;
                                   }}});
  EXPECT_EQ(calls, 1);
  auto f = SafetensorsFile::open(path);
  const kvrag::TensorInfo* a = f->find("a");
  const kvrag::TensorInfo* b = f->find("b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(std::memcmp(a->data, first.data(), 6), 0);
  const auto* got = reinterpret_cast<const int8_t*>(b->data);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(got[i], 10 * i);
}

TEST(Safetensors, WriteEmptyFile) {
  TempDir tmp;
  std::string path = tmp / "none.safetensors";
  kvrag::write_safetensors(path, {});
  auto f = SafetensorsFile::open(path);
  EXPECT_TRUE(f->tensors().empty());
  EXPECT_TRUE(f->metadata().empty());
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir tmp;
  std::string path = tmp / "bad.safetensors";
  float x[2] = {1, 2};
  EXPECT_KVRAG_ERROR(
      kvrag::write_safetensors(path, {{"a", DType::F32, {1}, x}, {"a", DType::F32, {1}, x}}), path,
      "duplicate tensor name \"a\"");
  EXPECT_KVRAG_ERROR(kvrag::write_safetensors(path, {{"__metadata__", DType::F32, {1}, x}}), path,
                     "__metadata__");
  EXPECT_KVRAG_ERROR(kvrag::write_safetensors(path, {{"", DType::F32, {1}, x}}), path,
                     "empty name");
  EXPECT_KVRAG_ERROR(kvrag::write_safetensors(path, {{"neg", DType::F32, {-1, 2}, x}}), path, "neg",
                     "invalid shape [-1, 2]");
  EXPECT_KVRAG_ERROR(kvrag::write_safetensors(path, {{"null", DType::F32, {2}, nullptr}}), path,
                     "null", "no data");
  EXPECT_FALSE(std::filesystem::exists(path));
  // Nothing left behind in the directory either.
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
}

TEST(Safetensors, WriterMissingDirectory) {
  TempDir tmp;
  std::string path = tmp / "missing/x.safetensors";
  EXPECT_KVRAG_ERROR(kvrag::write_safetensors(path, {}), path, "No such file or directory");
}

// Python's json + struct (and numpy, if present) read what we write.
TEST(Safetensors, ReadableFromPython) {
  const char* python = "/usr/bin/python3";
  if (!std::filesystem::exists(python)) GTEST_SKIP() << "no /usr/bin/python3";
  TempDir tmp;
  std::string path = tmp / "py.safetensors";
  RoundTripData d;
  kvrag::write_safetensors(path, d.tensors(), {{"format", "pt"}});

  std::string script = tmp / "check.py";
  std::ofstream(script) << R"PY(
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
assert (8 + n) % 8 == 0, n
h = json.loads(b[8:8 + n].decode('utf-8'))
assert h.pop('__metadata__') == {'format': 'pt'}
data = b[8 + n:]
def raw(name):
    s, e = h[name]['data_offsets']
    return data[s:e]
assert h['w.f32']['dtype'] == 'F32' and h['w.f32']['shape'] == [2, 3]
assert list(struct.unpack('<6f', raw('w.f32'))) == [1.5, -2.0, 3.25, 0.0, struct.unpack('<f', struct.pack('<f', 1e-30))[0], -7.0]
assert list(struct.unpack('<4H', raw('w.f16'))) == [0x3c00, 0xc000, 0x7bff, 0x0001]
assert list(struct.unpack('<6H', raw('w.bf16'))) == [0x3f80, 0xbf80, 0x4049, 0, 0x7f80, 0xff80]
assert list(struct.unpack('<5q', raw('ids.i64'))) == [-2**63, -1, 0, 42, 2**63 - 1]
assert h['empty']['shape'] == [0, 8] and raw('empty') == b''
assert sum(e - s for s, e in (t['data_offsets'] for t in h.values())) == len(data)
try:
    import numpy as np
except ImportError:
    sys.exit(0)
assert np.frombuffer(raw('w.f32'), dtype='<f4').reshape(2, 3)[1, 2] == -7.0
assert np.frombuffer(raw('w.f16'), dtype='<f2')[0] == 1.0
assert np.frombuffer(raw('ids.i64'), dtype='<i8')[3] == 42
)PY";
  std::string cmd = std::string(python) + " " + script + " " + path;
  int rc = std::system(cmd.c_str());
  EXPECT_EQ(rc, 0) << cmd;
}

// --- validation ----------------------------------------------------------------------------------

TEST(SafetensorsErrors, MissingOrNotAFile) {
  TempDir tmp;
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(tmp / "missing.safetensors"), "missing.safetensors",
                     "No such file or directory");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(tmp.path()), tmp.path(), "not a regular file");
}

TEST(SafetensorsErrors, TruncatedFile) {
  TempDir tmp;
  std::string path = tmp / "short.safetensors";
  write_bytes(path, "");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "truncated (0 bytes");
  write_bytes(path, std::string(7, '\0'));
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "truncated (7 bytes");
}

TEST(SafetensorsErrors, HeaderLengthPastEnd) {
  TempDir tmp;
  std::string header = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::string path = raw_file(tmp, header, "abcd", header.size() + 5);
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "header length",
                     "runs past the end of the file");
  // The data area cut short: the header is whole, the tensor's bytes are not.
  path = raw_file(tmp, header, "ab");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor a",
                     "run past the end of the data area (2 bytes)");
}

TEST(SafetensorsErrors, AbsurdHeaderLength) {
  TempDir tmp;
  std::string path = raw_file(tmp, "{}", "", uint64_t(1) << 62);
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "too large");
  path = raw_file(tmp, "{}", "", UINT64_MAX - 1);  // 8 + N would wrap around
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "too large");
}

TEST(SafetensorsErrors, BadJson) {
  TempDir tmp;
  std::string path = raw_file(tmp, R"({"a": {"dtype": "F32", )");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "not valid JSON");
  path = raw_file(tmp, "");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "not valid JSON");
  path = raw_file(tmp, "{\"\xff\xfe\": 1}");  // invalid UTF-8
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "not valid JSON");
  path = raw_file(tmp, "[1, 2]");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "not a JSON object");
}

TEST(SafetensorsErrors, EntryNotAnObjectOrIncomplete) {
  TempDir tmp;
  std::string path = raw_file(tmp, R"({"a": [1, 2]})");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor a", "not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    nlohmann::json entry = {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}};
    entry.erase(key);
    path = raw_file(tmp, nlohmann::json{{"w", entry}}.dump(), "abcd");
    EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w",
                       std::string("lacks \"") + key + "\"");
  }
}

TEST(SafetensorsErrors, UnknownDType) {
  TempDir tmp;
  std::string path =
      raw_file(tmp, R"({"w":{"dtype":"F8_E5M2","shape":[4],"data_offsets":[0,4]}})", "abcd");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w", "unknown dtype \"F8_E5M2\"");
  path = raw_file(tmp, R"({"w":{"dtype":4,"shape":[4],"data_offsets":[0,4]}})", "abcd");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w", "dtype is not a string");
}

// Found by fuzzing (fuzz/corpus/safetensors/regression-*): the message quoted the bad value with
// dump(), which recursed once per level of a 100,000-deep array until the stack overflowed.
TEST(SafetensorsErrors, HostileValuesAreNamedNotDumped) {
  TempDir tmp;
  const std::string deep(100000, '[');
  std::string path = raw_file(tmp,
                              R"({"w":{"dtype":)" + deep + std::string(100000, ']') +
                                  R"(,"shape":[4],"data_offsets":[0,4]}})",
                              "abcd");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w",
                     "dtype is not a string: an array of 1 item");
}

TEST(SafetensorsErrors, BadShape) {
  TempDir tmp;
  for (const char* shape :
       {"[-1, 4]", "[2.0]", "[\"2\"]", "[null]", "{}", "4", "[9223372036854775808]"}) {
    std::string header =
        std::string(R"({"w":{"dtype":"U8","shape":)") + shape + R"(,"data_offsets":[0,0]}})";
    std::string path = raw_file(tmp, header);
    SCOPED_TRACE(shape);
    EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w", "shape");
  }
}

TEST(SafetensorsErrors, ShapeOverflow) {
  TempDir tmp;
  std::string path = raw_file(
      tmp, R"({"w":{"dtype":"F32","shape":[4611686018427387904, 4],"data_offsets":[0,0]}})");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w", "overflows");
  // numel fits in u64 but not int64.
  path = raw_file(tmp,
                  R"({"w":{"dtype":"U8","shape":[4294967296, 4294967295],"data_offsets":[0,0]}})");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w", "overflows");
}

TEST(SafetensorsErrors, BadOffsets) {
  TempDir tmp;
  for (const char* offsets : {"[0]", "[0, 4, 8]", "[-4, 0]", "[0, 4.0]", "\"0,4\"", "{}"}) {
    std::string header =
        std::string(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":)") + offsets + "}}";
    std::string path = raw_file(tmp, header, "abcdefgh");
    SCOPED_TRACE(offsets);
    EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w",
                       "is not [begin, end] of non-negative integers");
  }
  std::string path =
      raw_file(tmp, R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", "abcd");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w", "begin > end");
}

TEST(SafetensorsErrors, OffsetsOutOfRange) {
  TempDir tmp;
  std::string path =
      raw_file(tmp, R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", "0123456789");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w", "[4, 12]",
                     "run past the end of the data area (10 bytes)");
  // Even a zero-byte tensor must sit inside the data area.
  path = raw_file(tmp, R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[100,100]}})", "abcd");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w", "run past the end");
  // Offsets beyond int64 are not accepted as integers at all.
  path = raw_file(
      tmp,
      R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[18446744073709551615,18446744073709551615]}})");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w", "non-negative integers");
}

TEST(SafetensorsErrors, LengthDoesNotMatchShape) {
  TempDir tmp;
  std::string path = raw_file(tmp, R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})",
                              std::string(16, 'x'));
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w",
                     "shape [2, 2] of F32 needs 16 bytes but data_offsets [0, 12] hold 12");
  path = raw_file(tmp, R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}})", "abcd");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensor w", "needs 6 bytes");
}

TEST(SafetensorsErrors, OverlappingTensors) {
  TempDir tmp;
  std::string path = raw_file(tmp,
                              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              std::string(12, 'x'));
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "tensors a [0, 8] and b [4, 12] overlap");
  // Identical ranges overlap too, and containment is caught across an intervening tensor.
  path = raw_file(tmp,
                  R"({"big":{"dtype":"U8","shape":[12],"data_offsets":[0,12]},)"
                  R"("x":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                  R"("y":{"dtype":"U8","shape":[2],"data_offsets":[8,10]}})",
                  std::string(12, 'x'));
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "big", "overlap");
  path = raw_file(tmp,
                  R"({"p":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                  R"("q":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})",
                  "abcd");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "p [0, 4] and q [0, 4] overlap");
}

TEST(SafetensorsErrors, DuplicateNames) {
  TempDir tmp;
  std::string path = raw_file(tmp,
                              R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                              R"("a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                              "abcd");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "duplicate tensor name \"a\"");
  // Duplicate keys inside an entry are as ambiguous.
  path =
      raw_file(tmp, R"({"a":{"dtype":"U8","dtype":"F32","shape":[2],"data_offsets":[0,2]}})", "ab");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "duplicate key \"dtype\"");
}

TEST(SafetensorsErrors, BadMetadata) {
  TempDir tmp;
  std::string path = raw_file(tmp, R"({"__metadata__":{"format":"pt","n":3}})");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "__metadata__", "\"n\"", "not a string");
  path = raw_file(tmp, R"({"__metadata__":["pt"]})");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "__metadata__ is not an object");
  path = raw_file(tmp, R"({"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}})");
  EXPECT_KVRAG_ERROR(SafetensorsFile::open(path), path, "duplicate", "__metadata__");
}

// Accepted oddities: zero-element tensors anywhere, gaps, padding, unaligned data.
TEST(Safetensors, AcceptsValidEdgeCases) {
  TempDir tmp;
  // Header of odd length: the data area starts at an odd address.
  std::string header = R"({"z":{"dtype":"F32","shape":[0],"data_offsets":[1,1]},)"
                       R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("e":{"dtype":"I64","shape":[3,0],"data_offsets":[8,8]},)"
                       R"("g":{"dtype":"U8","shape":[1],"data_offsets":[10,11]}})";
  if (header.size() % 2 == 0) header += " ";
  std::string data = "ABCDEFGH??Z";
  std::string path = raw_file(tmp, header, data);
  auto f = SafetensorsFile::open(path);
  ASSERT_EQ(f->tensors().size(), 4u);
  const kvrag::TensorInfo* w = f->find("w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w->data) % 2, 1u);  // unaligned, handed out as is
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(w->data), w->nbytes), "ABCDEFGH");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f->find("g")->data), 1), "Z");
  EXPECT_EQ(f->find("z")->nbytes, 0u);
  EXPECT_EQ(f->find("e")->numel(), 0);
  // Data-area order.
  EXPECT_EQ(f->tensors()[0].name, "w");
  EXPECT_EQ(f->tensors()[3].name, "g");
}

// Random corruption of a valid file: open() either succeeds with self-consistent tensors or
// throws kvrag::Error — never crashes, never hands out bytes outside the file.
TEST(Safetensors, CorruptionOnlyEverThrowsError) {
  TempDir tmp;
  std::string good_path = tmp / "good.safetensors";
  RoundTripData d;
  kvrag::write_safetensors(good_path, d.tensors(), {{"format", "pt"}});
  const std::string good = kvrag::read_file(good_path);

  std::string path = tmp / "bad.safetensors";
  uint64_t state = 12345;
  auto next = [&] { return state = state * 6364136223846793005ull + 1442695040888963407ull; };
  int opened = 0, rejected = 0;
  for (int round = 0; round < 1000; ++round) {
    std::string bytes = good;
    int edits = 1 + static_cast<int>(next() >> 61);
    for (int e = 0; e < edits; ++e) {
      size_t pos = (next() >> 33) % std::min<size_t>(bytes.size(), 8 + 600);  // mostly header
      const char* alphabet = "0123456789[]{},:\"-eE. \\x";
      bytes[pos] =
          (next() >> 40) % 2 ? alphabet[(next() >> 35) % 24] : static_cast<char>(next() >> 56);
    }
    if (next() % 8 == 0) bytes.resize((next() >> 33) % bytes.size());  // truncation
    write_bytes(path, bytes);
    try {
      auto f = SafetensorsFile::open(path);
      ++opened;
      const std::byte* begin = f->tensors().empty() ? nullptr : f->tensors().front().data;
      for (const auto& t : f->tensors()) {
        ASSERT_GE(t.data, begin);
        ASSERT_EQ(t.nbytes, static_cast<size_t>(t.numel()) * kvrag::dtype_size(t.dtype));
        ASSERT_LE(static_cast<size_t>(t.data - begin) + t.nbytes, bytes.size());
      }
    } catch (const kvrag::Error&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 0);
  EXPECT_EQ(opened + rejected, 1000);
}

// --- real Hugging Face files
// ----------------------------------------------------------------------

TEST(SafetensorsFixtures, TinyBert) {
  KVRAG_SHARED_PATH_OR_SKIP(path, "fixtures/tiny-bert/model.safetensors");
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->tensors().size(), 39u);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  const kvrag::TensorInfo* t = f->find("embeddings.word_embeddings.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, DType::F32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{200, 64}));
  for (const auto& info : f->tensors()) EXPECT_EQ(info.dtype, DType::F32) << info.name;
}

TEST(SafetensorsFixtures, Stories260K) {
  KVRAG_SHARED_PATH_OR_SKIP(path, "models/stories260K/model.safetensors");
  auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->tensors().size(), 47u);  // 2 + 5 layers × 9, embeddings tied
  const kvrag::TensorInfo* t = f->find("model.layers.4.mlp.down_proj.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{64, 172}));
  EXPECT_EQ(f->find("lm_head.weight"), nullptr);
  // Tensors tile the data area with no gaps.
  size_t total = 0;
  for (const auto& info : f->tensors()) total += info.nbytes;
  EXPECT_EQ(reinterpret_cast<const char*>(f->tensors().back().data) + f->tensors().back().nbytes -
                reinterpret_cast<const char*>(f->tensors().front().data),
            static_cast<ptrdiff_t>(total));
}
