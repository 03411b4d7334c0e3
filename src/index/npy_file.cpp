// .npy reading and writing, and IEEE half <-> float conversion.
//
// Format 1.0 (numpy/lib/format.py): the magic "\x93NUMPY", major and minor version bytes, a
// little-endian uint16 header length, then the header — the repr() of a Python dict such as
//   {'descr': '<f2', 'fortran_order': False, 'shape': (1000, 768), }
// padded with spaces and ended by '\n' so that the data begins at a multiple of 64 bytes.
// Versions 2.0 and 3.0 differ only in a uint32 header length (and UTF-8 for 3.0).
#include "index/npy_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "core/atomic_file.h"
#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define KVRAG_HAVE_F16C_PATH 1
#endif

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "the .npy code assumes a little-endian host");

namespace kvrag {

// --- half <-> float ----------------------------------------------------------------------------

namespace {

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);  // ±0
    // Subnormal: m × 2^-24. Normalise the mantissa; each shift lowers the exponent.
    exp = 127 - 14;
    while ((mant & 0x400) == 0) {
      mant <<= 1;
      --exp;
    }
    return bits_float(sign | (exp << 23) | ((mant & 0x3ff) << 13));
  }
  if (exp == 31) {
    // Inf, or NaN with its payload kept and (as F16C does) the quiet bit set.
    return bits_float(sign | 0x7f800000u | (mant << 13) | (mant != 0 ? 0x400000u : 0));
  }
  return bits_float(sign | ((exp + 127 - 15) << 23) | (mant << 13));
}

uint16_t float_to_half(float f) {
  const uint32_t x = float_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000;
  const uint32_t a = x & 0x7fffffff;
  if (a >= 0x7f800000) {  // inf, NaN (payload truncated, quiet bit set — as F16C does)
    return static_cast<uint16_t>(a == 0x7f800000 ? sign | 0x7c00
                                                 : sign | 0x7e00 | ((a >> 13) & 0x3ff));
  }
  // 65520 is halfway between the largest half (65504) and 65536; ties-to-even goes up to inf.
  if (a >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00);
  if (a < 0x38800000) {  // below 2^-14: a half subnormal (or zero)
    if (a <= 0x33000000) return static_cast<uint16_t>(sign);  // ≤ 2^-25 rounds (to even) to 0
    const uint32_t exp = a >> 23;                             // 102 … 112
    const uint32_t mant = (a & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - exp;  // value / 2^-24 = mant >> shift
    uint32_t r = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1))) ++r;  // may become 0x400: smallest normal
    return static_cast<uint16_t>(sign | r);
  }
  // Normal: re-bias the exponent (127 → 15) and round 23 mantissa bits to 10. A carry out of
  // the mantissa correctly bumps the exponent.
  uint32_t r = (a - ((127 - 15) << 23)) >> 13;
  const uint32_t rem = a & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
  return static_cast<uint16_t>(sign | r);
}

#ifdef KVRAG_HAVE_F16C_PATH
namespace {

// From cpuid itself: clang's __builtin_cpu_supports() does not know "f16c".
bool cpu_has_f16c() {
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool avx = (c >> 28) & 1, f16c = (c >> 29) & 1, osxsave = (c >> 27) & 1;
    if (!avx || !f16c || !osxsave) return false;
    uint32_t xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    return (xcr0_lo & 0x6) == 0x6;  // the OS saves the XMM and YMM registers
  }();
  return has;
}

__attribute__((target("avx,f16c"))) void half_to_float_f16c(const uint16_t* in, float* out,
                                                            size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) out[i] = half_to_float(in[i]);
}

__attribute__((target("avx,f16c"))) void float_to_half_f16c(const float* in, uint16_t* out,
                                                            size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), h);
  }
  for (; i < n; ++i) out[i] = float_to_half(in[i]);
}

}  // namespace
#endif

void half_to_float(const uint16_t* in, float* out, size_t n) {
#ifdef KVRAG_HAVE_F16C_PATH
  if (cpu_has_f16c()) return half_to_float_f16c(in, out, n);
#endif
  for (size_t i = 0; i < n; ++i) out[i] = half_to_float(in[i]);
}

void float_to_half(const float* in, uint16_t* out, size_t n) {
#ifdef KVRAG_HAVE_F16C_PATH
  if (cpu_has_f16c()) return float_to_half_f16c(in, out, n);
#endif
  for (size_t i = 0; i < n; ++i) out[i] = float_to_half(in[i]);
}

// --- writing -------------------------------------------------------------------------------------

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
constexpr size_t kAlign = 64;  // numpy's ARRAY_ALIGN

const char* descr_of(NpyDtype dtype) { return dtype == NpyDtype::kF16 ? "<f2" : "<f4"; }

}  // namespace

std::string npy_header(NpyDtype dtype, int64_t rows, int64_t cols) {
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': ({}, {}), }}",
                                 descr_of(dtype), rows, cols);
  // Pad with spaces so that magic + version + length + header (ending in '\n') fills whole
  // 64-byte blocks.
  const size_t prefix = kMagicLen + 2 + 2;
  const size_t unpadded = prefix + dict.size() + 1;
  dict.append((kAlign - unpadded % kAlign) % kAlign, ' ');
  dict.push_back('\n');
  const size_t header_len = dict.size();  // < 65536: the dict is short

  std::string head(kMagic, kMagicLen);
  head.push_back(1);  // major
  head.push_back(0);  // minor
  head.push_back(static_cast<char>(header_len & 0xff));
  head.push_back(static_cast<char>(header_len >> 8));
  head += dict;
  return head;
}

void write_npy(const std::string& path, NpyDtype dtype, const void* data, int64_t rows,
               int64_t cols) {
  KVRAG_CHECK(rows >= 0 && cols >= 1, "cannot write {}: invalid shape ({}, {})", path, rows, cols);
  KVRAG_CHECK(rows == 0 || data != nullptr, "cannot write {}: no data", path);
  uint64_t bytes = 0;
  KVRAG_CHECK(!__builtin_mul_overflow(uint64_t(rows), uint64_t(cols) * npy_itemsize(dtype), &bytes),
              "cannot write {}: shape ({}, {}) is too large", path, rows, cols);
  AtomicFile f(path);
  f.write(npy_header(dtype, rows, cols));
  if (bytes > 0) f.write(data, bytes);
  f.commit();
}

// --- reading -------------------------------------------------------------------------------------

namespace {

// A parser for the header dict: a Python literal with string keys and string, bool or
// tuple-of-int values. Whatever else appears is rejected.
class HeaderParser {
 public:
  explicit HeaderParser(std::string_view s) : s_(s) {}

  struct Header {
    std::string descr;
    bool fortran_order = false;
    std::vector<int64_t> shape;
    bool has_descr = false, has_order = false, has_shape = false;
  };

  Header parse() {
    Header h;
    expect('{');
    for (;;) {
      skip_ws();
      if (peek() == '}') {
        ++pos_;
        break;
      }
      const std::string key = parse_string();
      expect(':');
      skip_ws();
      if (key == "descr") {
        h.descr = parse_string();
        h.has_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = parse_bool();
        h.has_order = true;
      } else if (key == "shape") {
        h.shape = parse_tuple();
        h.has_shape = true;
      } else {
        fail("unexpected key '{}' in the header", key);
      }
      skip_ws();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != '}') {
        fail("malformed header dict at offset {}", pos_);
      }
    }
    skip_ws();
    KVRAG_CHECK(pos_ == s_.size(), "trailing characters after the header dict");
    KVRAG_CHECK(h.has_descr && h.has_order && h.has_shape,
                "header lacks one of 'descr', 'fortran_order', 'shape'");
    return h;
  }

 private:
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r'))
      ++pos_;
  }
  void expect(char c) {
    skip_ws();
    KVRAG_CHECK(peek() == c, "malformed header: expected '{}' at offset {}", c, pos_);
    ++pos_;
  }
  std::string parse_string() {
    skip_ws();
    const char q = peek();
    KVRAG_CHECK(q == '\'' || q == '"', "malformed header: expected a string at offset {}", pos_);
    const size_t end = s_.find(q, pos_ + 1);
    KVRAG_CHECK(end != std::string_view::npos, "malformed header: unterminated string");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }
  bool parse_bool() {
    if (s_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (s_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("malformed header: expected True or False at offset {}", pos_);
  }
  std::vector<int64_t> parse_tuple() {
    expect('(');
    std::vector<int64_t> out;
    for (;;) {
      skip_ws();
      if (peek() == ')') {
        ++pos_;
        return out;
      }
      KVRAG_CHECK(peek() >= '0' && peek() <= '9', "malformed shape at offset {}", pos_);
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        KVRAG_CHECK(v < (int64_t(1) << 50), "shape dimension too large");
        v = v * 10 + (s_[pos_++] - '0');
      }
      if (peek() == 'L') ++pos_;  // Python 2 longs
      out.push_back(v);
      skip_ws();
      if (peek() == ',') {
        ++pos_;
      } else {
        KVRAG_CHECK(peek() == ')', "malformed shape at offset {}", pos_);
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

std::string errno_string(int err) { return std::strerror(err); }

}  // namespace

NpyLayout parse_npy_layout(const void* bytes, size_t size) {
  KVRAG_CHECK(size >= kMagicLen + 4, "not a .npy file ({} bytes)", size);
  NpyLayout out;
  const auto* p = static_cast<const unsigned char*>(bytes);
  KVRAG_CHECK(std::memcmp(p, kMagic, kMagicLen) == 0, "not a .npy file (bad magic)");
  const int major = p[6], minor = p[7];
  KVRAG_CHECK((major == 1 || major == 2 || major == 3) && minor == 0,
              "unsupported .npy format version {}.{}", major, minor);
  size_t header_start, header_len;
  if (major == 1) {
    header_start = 10;
    header_len = size_t(p[8]) | size_t(p[9]) << 8;
  } else {
    KVRAG_CHECK(size >= 12, "truncated header");
    header_start = 12;
    header_len = size_t(p[8]) | size_t(p[9]) << 8 | size_t(p[10]) << 16 | size_t(p[11]) << 24;
  }
  KVRAG_CHECK(header_len <= size - header_start,
              "truncated header ({} bytes announced, file has {})", header_len, size);
  const auto header =
      HeaderParser(std::string_view(reinterpret_cast<const char*>(p) + header_start, header_len))
          .parse();

  if (header.descr == "<f2" || header.descr == "=f2") {
    out.dtype = NpyDtype::kF16;
  } else if (header.descr == "<f4" || header.descr == "=f4") {
    out.dtype = NpyDtype::kF32;
  } else {
    fail("dtype '{}' is not supported (expected '<f2' float16 or '<f4' float32)", header.descr);
  }
  KVRAG_CHECK(!header.fortran_order, "Fortran-order arrays are not supported (expected C order)");
  KVRAG_CHECK(header.shape.size() == 2, "expected a 2-D matrix, found {} dimensions",
              header.shape.size());
  out.rows = header.shape[0];
  out.cols = header.shape[1];
  KVRAG_CHECK(out.cols >= 1, "matrix has no columns");

  const size_t offset = header_start + header_len;
  const size_t itemsize = npy_itemsize(out.dtype);
  KVRAG_CHECK(offset % itemsize == 0, "data offset {} is not aligned", offset);
  uint64_t data_bytes = 0;
  KVRAG_CHECK(
      !__builtin_mul_overflow(uint64_t(out.rows), uint64_t(out.cols) * itemsize, &data_bytes),
      "shape ({}, {}) is too large", out.rows, out.cols);
  const uint64_t expected = offset + data_bytes;
  KVRAG_CHECK(size >= expected, "truncated: {} bytes, but shape ({}, {}) needs {}", size, out.rows,
              out.cols, expected);
  KVRAG_CHECK(size == expected, "{} unexpected bytes after the data of shape ({}, {})",
              size - expected, out.rows, out.cols);
  out.data_offset = offset;
  return out;
}

std::unique_ptr<NpyMatrix> NpyMatrix::open(const std::string& path) {
  std::unique_ptr<NpyMatrix> m(new NpyMatrix());
  m->path_ = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open {}: {}", path, errno_string(errno));
  m->fd_ = fd;  // closed by the destructor, also on the errors below
  struct stat st;
  if (::fstat(fd, &st) != 0) fail("cannot stat {}: {}", path, errno_string(errno));
  if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", path);
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < kMagicLen + 4) fail("{}: not a .npy file ({} bytes)", path, size);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) fail("cannot map {}: {}", path, errno_string(errno));
  m->map_ = map;
  m->map_size_ = size;

  try {
    const NpyLayout layout = parse_npy_layout(map, size);
    m->dtype_ = layout.dtype;
    m->rows_ = layout.rows;
    m->cols_ = layout.cols;
    m->data_offset_ = layout.data_offset;
    m->data_ = static_cast<const unsigned char*>(map) + layout.data_offset;
  } catch (Error& e) {
    throw e.with_context(path);  // the destructor unmaps and closes
  }
  return m;
}

NpyMatrix::~NpyMatrix() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
  if (fd_ >= 0) ::close(fd_);
}

void NpyMatrix::pread_data(size_t offset, size_t bytes, void* out) const {
  read_bytes(data_offset_ + offset, bytes, out);
}

void NpyMatrix::read_bytes(uint64_t offset, size_t bytes, void* out) const {
  auto* dst = static_cast<char*>(out);
  uint64_t pos = offset;
  while (bytes > 0) {
    const ssize_t got = ::pread(fd_, dst, bytes, static_cast<off_t>(pos));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("cannot read {}: {}", path_, errno_string(errno));
    if (got == 0) fail("cannot read {}: the file was truncated while open", path_);
    dst += got;
    pos += static_cast<size_t>(got);
    bytes -= static_cast<size_t>(got);
  }
}

void NpyMatrix::row(int64_t i, float* out) const {
  const size_t rb = static_cast<size_t>(cols_) * npy_itemsize(dtype_);
  if (dtype_ == NpyDtype::kF32) {
    pread_data(size_t(i) * rb, rb, out);
    return;
  }
  thread_local std::vector<uint16_t> buf;
  buf.resize(static_cast<size_t>(cols_));
  pread_data(size_t(i) * rb, rb, buf.data());
  half_to_float(buf.data(), out, buf.size());
}

void NpyMatrix::prefetch(int64_t begin, int64_t n) const {
  if (begin < 0 || n <= 0 || begin + n > rows_) return;
  const size_t rb = static_cast<size_t>(cols_) * npy_itemsize(dtype_);
  // Advisory: an error changes nothing.
  ::posix_fadvise(fd_, static_cast<off_t>(data_offset_ + size_t(begin) * rb),
                  static_cast<off_t>(size_t(n) * rb), POSIX_FADV_WILLNEED);
}

void NpyMatrix::read_rows(int64_t begin, int64_t n, float* out) const {
  KVRAG_CHECK(begin >= 0 && n >= 0 && begin + n <= rows_, "{}: rows [{}, {}) out of range (0, {})",
              path_, begin, begin + n, rows_);
  const size_t rb = static_cast<size_t>(cols_) * npy_itemsize(dtype_);
  if (dtype_ == NpyDtype::kF32) {
    pread_data(size_t(begin) * rb, size_t(n) * rb, out);
    return;
  }
  // float16: through a buffer of about 1 MiB, converted piece by piece.
  const int64_t step = std::max<int64_t>(1, (int64_t(1) << 20) / int64_t(rb));
  thread_local std::vector<uint16_t> buf;
  for (int64_t r = 0; r < n; r += step) {
    const int64_t m = std::min(step, n - r);
    buf.resize(static_cast<size_t>(m * cols_));
    pread_data(size_t(begin + r) * rb, size_t(m) * rb, buf.data());
    half_to_float(buf.data(), out + r * cols_, buf.size());
  }
}

}  // namespace kvrag
