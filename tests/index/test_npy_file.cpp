// .npy files: round trips, numpy interoperability, validation errors, half <-> float.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.h"
#include "index/npy_file.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

// The message of the kvrag::Error `f` throws ("" if none).
template <typename F>
std::string npy_error(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), std::streamsize(bytes.size()));
}

// A .npy file with a hand-written header dict (format 1.0, 64-byte aligned) and `data_bytes`
// zero bytes of data.
std::string npy_with_header(const std::string& dict, size_t data_bytes) {
  std::string h = dict;
  while ((10 + h.size() + 1) % 64 != 0) h.push_back(' ');
  h.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(h.size() & 0xff));
  out.push_back(static_cast<char>(h.size() >> 8));
  return out + h + std::string(data_bytes, '\0');
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

TEST(NpyHalf, EveryHalfRoundTripsAndBulkMatchesScalar) {
  std::vector<uint16_t> all(65536);
  for (int i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> bulk(all.size());
  half_to_float(all.data(), bulk.data(), all.size());  // F16C when available
  std::vector<uint16_t> back(all.size());
  float_to_half(bulk.data(), back.data(), bulk.size());
  for (int i = 0; i < 65536; ++i) {
    const float f = half_to_float(all[i]);
    ASSERT_EQ(bits(f), bits(bulk[i])) << "half 0x" << std::hex << i;
    const bool nan = (i & 0x7c00) == 0x7c00 && (i & 0x3ff) != 0;
    if (nan) {
      ASSERT_TRUE(std::isnan(f));
      ASSERT_EQ(float_to_half(f), i | 0x200) << std::hex << i;  // quietened
    } else {
      ASSERT_EQ(float_to_half(f), i) << std::hex << i;
    }
    ASSERT_EQ(back[i], float_to_half(f)) << std::hex << i;
  }
  EXPECT_EQ(half_to_float(0x3c00), 1.0f);
  EXPECT_EQ(half_to_float(0xc000), -2.0f);
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(half_to_float(0x7bff), 65504.0f);
}

TEST(NpyHalf, RoundsToNearestEven) {
  EXPECT_EQ(float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie → even
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie → even (up)
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);  // tie between 65504 and 65536 → inf
  EXPECT_EQ(float_to_half(1e10f), 0x7c00);
  EXPECT_EQ(float_to_half(-INFINITY), 0xfc00);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // tie → even (0)
  EXPECT_EQ(float_to_half(std::ldexp(1.5f, -25)), 0x0001);
  EXPECT_EQ(float_to_half(std::ldexp(3.0f, -25)), 0x0002);     // 1.5 × 2^-24: tie → even
  EXPECT_EQ(float_to_half(std::ldexp(1023.5f, -24)), 0x0400);  // rounds up into the normals
  EXPECT_TRUE(std::isnan(half_to_float(float_to_half(NAN))));

  // Random floats over the whole range: bulk (F16C) == scalar, and within half an ulp.
  std::mt19937 rng(7);
  std::vector<float> x(100003);
  for (auto& v : x) {
    uint32_t u = rng();
    std::memcpy(&v, &u, 4);
    if (!std::isfinite(v) || std::fabs(v) > 70000.0f || std::fabs(v) < 1e-9f)
      v = std::ldexp(float(int(u % 2001) - 1000), -int(u % 30));
  }
  std::vector<uint16_t> h(x.size());
  float_to_half(x.data(), h.data(), x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(h[i], float_to_half(x[i])) << x[i];
    const float back = half_to_float(h[i]);
    if (std::fabs(x[i]) < 65504.0f) {
      const float ulp = std::fabs(x[i]) < std::ldexp(1.0f, -14)
                            ? std::ldexp(1.0f, -24)
                            : std::ldexp(1.0f, std::ilogb(x[i]) - 10);
      ASSERT_LE(std::fabs(back - x[i]), ulp / 2) << x[i];
    }
  }
}

TEST(NpyFile, RoundTripBothDtypesWith64ByteAlignedData) {
  TempDir dir;
  const int64_t rows = 37, cols = 5;
  std::vector<float> f(rows * cols);
  for (size_t i = 0; i < f.size(); ++i) f[i] = 0.25f * float(i) - 3.0f;
  std::vector<uint16_t> h(f.size());
  float_to_half(f.data(), h.data(), f.size());

  write_npy(dir / "a.npy", NpyDtype::kF32, f.data(), rows, cols);
  write_npy(dir / "b.npy", NpyDtype::kF16, h.data(), rows, cols);
  for (const auto& [name, dtype] :
       {std::pair{"a.npy", NpyDtype::kF32}, std::pair{"b.npy", NpyDtype::kF16}}) {
    const auto m = NpyMatrix::open(dir / name);
    EXPECT_EQ(m->rows(), rows);
    EXPECT_EQ(m->cols(), cols);
    EXPECT_EQ(m->dtype(), dtype);
    const size_t file_size = fs::file_size(dir / name);
    EXPECT_EQ((file_size - rows * cols * npy_itemsize(dtype)) % 64, 0u) << name;
    std::vector<float> got(rows * cols);
    m->read_rows(0, rows, got.data());
    EXPECT_EQ(got, f) << name;  // exactly representable in half
    std::vector<float> row(cols);
    m->row(36, row.data());
    EXPECT_EQ(row, std::vector<float>(f.end() - cols, f.end()));
    EXPECT_NE(npy_error([&] { m->read_rows(30, 8, got.data()); }).find("out of range"),
              std::string::npos);
  }
  // Empty matrices are valid; writing replaces, and leaves no temporary files behind.
  write_npy(dir / "a.npy", NpyDtype::kF32, nullptr, 0, 4);
  EXPECT_EQ(NpyMatrix::open(dir / "a.npy")->rows(), 0);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 2u);
  EXPECT_NE(npy_error([&] {
              write_npy(dir / "missing/x.npy", NpyDtype::kF32, f.data(), rows, cols);
            }).find("missing/x.npy"),
            std::string::npos);
  EXPECT_NE(
      npy_error([&] { write_npy(dir / "c.npy", NpyDtype::kF32, f.data(), 2, 0); }).find("shape"),
      std::string::npos);
}

TEST(NpyFile, ValidationErrorsNameTheFile) {
  TempDir dir;
  std::vector<uint16_t> h(6 * 4, 0x3c00);
  write_npy(dir / "ok.npy", NpyDtype::kF16, h.data(), 6, 4);
  const std::string good = slurp(dir / "ok.npy");

  auto expect_error = [&](const std::string& name, const std::string& bytes,
                          const std::string& part) {
    spit(dir / name, bytes);
    const std::string msg = npy_error([&] { NpyMatrix::open(dir / name); });
    EXPECT_NE(msg.find(name), std::string::npos) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << name << ": " << msg;
  };
  expect_error("truncated.npy", good.substr(0, good.size() - 3), "truncated");
  expect_error("trailing.npy", good + "xx", "unexpected bytes");
  expect_error("magic.npy", "\x93NUMPZ" + good.substr(6), "bad magic");
  expect_error("tiny.npy", "\x93NU", "not a .npy file");
  expect_error("version.npy", good.substr(0, 6) + "\x07" + good.substr(7), "version");
  expect_error("header_len.npy", good.substr(0, 8) + "\xff\xff" + good.substr(10),
               "truncated header");
  expect_error("f8.npy",
               npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }", 32),
               "'<f8'");
  expect_error("big_endian.npy",
               npy_with_header("{'descr': '>f2', 'fortran_order': False, 'shape': (2, 2), }", 8),
               "'>f2'");
  expect_error("fortran.npy",
               npy_with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16),
               "Fortran");
  expect_error(
      "three_d.npy",
      npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }", 32), "2-D");
  expect_error("one_d.npy",
               npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 16),
               "2-D");
  expect_error("no_shape.npy", npy_with_header("{'descr': '<f4', 'fortran_order': False, }", 0),
               "lacks");
  expect_error("garbage.npy",
               npy_with_header("{'descr': '<f4', 'fortran_order': Nope, 'shape': (1, 1), }", 4),
               "True or False");
  expect_error(
      "extra_key.npy",
      npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1), 'x': 1}", 4),
      "unexpected key");
  expect_error(
      "huge.npy",
      npy_with_header(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", 4),
      "too large");
  EXPECT_NE(npy_error([&] { NpyMatrix::open(dir / "absent.npy"); }).find("absent.npy"),
            std::string::npos);
  // A file cut short while open: reads fail with an Error (not SIGBUS).
  const auto open_matrix = NpyMatrix::open(dir / "ok.npy");
  fs::resize_file(dir / "ok.npy", 70);
  std::vector<float> rows(6 * 4);
  EXPECT_NE(
      npy_error([&] { open_matrix->read_rows(0, 6, rows.data()); }).find("truncated while open"),
      std::string::npos);
  EXPECT_NE(npy_error([&] { NpyMatrix::open(dir.path()); }).find("not a regular file"),
            std::string::npos);
}

// numpy.load reads what we write; we read what numpy.save writes. Skips without numpy.
TEST(NpyFile, NumpyInteroperability) {
  if (std::system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "/usr/bin/python3 with numpy not available";
  }
  TempDir dir;
  const int64_t rows = 9, cols = 3;
  std::vector<float> f(rows * cols);
  for (size_t i = 0; i < f.size(); ++i) f[i] = float(i) * 0.5f;
  std::vector<uint16_t> h(f.size());
  float_to_half(f.data(), h.data(), f.size());
  write_npy(dir / "ours16.npy", NpyDtype::kF16, h.data(), rows, cols);
  write_npy(dir / "ours32.npy", NpyDtype::kF32, f.data(), rows, cols);
  const std::string script =
      "import numpy as np, sys\nd = sys.argv[1]\na = np.load(d + '/ours16.npy'); b = np.load(d + "
      "'/ours32.npy')\nassert a.dtype == np.float16 and a.shape == (9, 3), (a.dtype, "
      "a.shape)\nassert b.dtype == np.float32 and b.shape == (9, 3)\nassert (a.astype(np.float32) "
      "== np.arange(27, dtype=np.float32).reshape(9, 3) * 0.5).all()\nassert (b == "
      "a.astype(np.float32)).all()\nnp.save(d + '/theirs16.npy', (np.arange(12, "
      "dtype=np.float32).reshape(4, 3) / 4).astype(np.float16))\nnp.save(d + '/theirs32.npy', "
      "np.arange(12, dtype=np.float32).reshape(4, 3))\nnp.save(d + '/theirs64.npy', np.zeros((2, "
      "2)))\nnp.save(d + '/fortran.npy', np.asfortranarray(np.zeros((2, 3), dtype=np.float32)))\n";
  spit(dir / "check.py", script);
  ASSERT_EQ(std::system(("/usr/bin/python3 " + (dir / "check.py") + " " + dir.path()).c_str()), 0);

  const auto t16 = NpyMatrix::open(dir / "theirs16.npy");
  const auto t32 = NpyMatrix::open(dir / "theirs32.npy");
  ASSERT_EQ(t16->rows(), 4);
  ASSERT_EQ(t16->cols(), 3);
  std::vector<float> a(12), b(12);
  t16->read_rows(0, 4, a.data());
  t32->read_rows(0, 4, b.data());
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(a[i], float(i) / 4);
    EXPECT_EQ(b[i], float(i));
  }
  EXPECT_NE(npy_error([&] { NpyMatrix::open(dir / "theirs64.npy"); }).find("'<f8'"),
            std::string::npos);
  EXPECT_NE(npy_error([&] { NpyMatrix::open(dir / "fortran.npy"); }).find("Fortran"),
            std::string::npos);
}

}  // namespace
}  // namespace kvrag
