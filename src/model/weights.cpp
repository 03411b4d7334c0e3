#include "model/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <optional>

#include "core/error.h"
#include "core/huge_pages.h"

namespace kvrag {
namespace {

// Drops this process's mapping of the whole pages inside a tensor's bytes once it has been read.
// The file's pages stay in the page cache (a later read maps them again), but they no longer
// count as this process's resident memory: without this, a load's peak RSS is the model plus
// the whole checkpoint file, e.g. 1.2 GB instead of 0.4 for a 110M model loaded as int8.
// Safe only because a TensorInfo's bytes are always a read-only private file mapping
// (SafetensorsFile::open): on anonymous memory MADV_DONTNEED would zero them.
void release_pages(const TensorInfo& info) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(info.data);
  const uintptr_t first = (begin + page - 1) / page * page,
                  last = (begin + info.nbytes) / page * page;
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

}  // namespace

torch::Dtype to_torch_dtype(DType dtype) {
  switch (dtype) {
    case DType::F64:
      return torch::kFloat64;
    case DType::F32:
      return torch::kFloat32;
    case DType::F16:
      return torch::kFloat16;
    case DType::BF16:
      return torch::kBFloat16;
    case DType::I64:
      return torch::kInt64;
    case DType::I32:
      return torch::kInt32;
    case DType::I16:
      return torch::kInt16;
    case DType::I8:
      return torch::kInt8;
    case DType::U8:
      return torch::kUInt8;
    case DType::BOOL:
      return torch::kBool;
  }
  fail("unsupported dtype");
}

DType from_torch_dtype(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat64:
      return DType::F64;
    case torch::kFloat32:
      return DType::F32;
    case torch::kFloat16:
      return DType::F16;
    case torch::kBFloat16:
      return DType::BF16;
    case torch::kInt64:
      return DType::I64;
    case torch::kInt32:
      return DType::I32;
    case torch::kInt16:
      return DType::I16;
    case torch::kInt8:
      return DType::I8;
    case torch::kUInt8:
      return DType::U8;
    case torch::kBool:
      return DType::BOOL;
    default:
      fail("dtype {} cannot be stored in safetensors", c10::toString(dtype));
  }
}

torch::Tensor checkpoint_tensor(const TensorInfo& info) {
  const auto dtype = to_torch_dtype(info.dtype);
  const size_t align = dtype_size(info.dtype);
  auto* data = const_cast<std::byte*>(info.data);
  if (info.nbytes == 0) return torch::empty(info.shape, dtype);
  if (reinterpret_cast<uintptr_t>(data) % align == 0) {
    return torch::from_blob(data, info.shape, torch::TensorOptions().dtype(dtype));
  }
  auto out = torch::empty(info.shape, dtype);
  std::memcpy(out.data_ptr(), data, info.nbytes);
  return out;
}

std::vector<std::string> load_parameters(torch::nn::Module& module, const Checkpoint& checkpoint,
                                         const std::string& name_prefix,
                                         const std::function<bool(const std::string&)>& optional) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> absent;
  for (auto& item : module.named_parameters(/*recurse=*/true)) {
    const std::string name = name_prefix + item.key();
    torch::Tensor& param = item.value();
    if (!checkpoint.has(name)) {
      if (optional && optional(item.key())) {
        absent.push_back(item.key());
        continue;
      }
      checkpoint.tensor(name);  // throws "missing tensor" with the checkpoint's context
    }
    const TensorInfo& info = checkpoint.expect(name, param.sizes().vec());
    KVRAG_CHECK(info.dtype != DType::I8 || !checkpoint.has(name + kQ8ScaleSuffix),
                "{}: tensor {} holds saved int8 weights (kvrag quantize): load this checkpoint "
                "with --dtype int8",
                checkpoint.file_of(name), name);
    KVRAG_CHECK(info.dtype == DType::F32 || info.dtype == DType::F16 || info.dtype == DType::BF16 ||
                    info.dtype == DType::F64,
                "{}: tensor {} has dtype {}, expected a floating-point dtype",
                checkpoint.file_of(name), name, dtype_name(info.dtype));
    advise_huge_pages(param.data_ptr(), param.nbytes());  // before its pages are first written
    param.copy_(checkpoint_tensor(info));
    release_pages(info);
  }
  return absent;
}

namespace {

// Every parameter of `module` as a tensor to write, named name_prefix + its name, in `dtype` (its
// own where none is given); `keep` holds the contiguous CPU copies until they are written.
std::vector<TensorToWrite> parameters_to_write(const torch::nn::Module& module,
                                               std::optional<torch::Dtype> dtype,
                                               const std::string& name_prefix,
                                               std::vector<torch::Tensor>& keep) {
  std::vector<TensorToWrite> tensors;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    const auto& p = item.value();
    keep.push_back(p.detach().to(torch::kCPU, dtype.value_or(p.scalar_type())).contiguous());
    tensors.push_back({name_prefix + item.key(), from_torch_dtype(keep.back().scalar_type()),
                       keep.back().sizes().vec(), keep.back().data_ptr()});
  }
  return tensors;
}

// A saved int8 weight `name` [n, k] (info: its I8 tensor) and its scales, checked and copied.
std::shared_ptr<Q8Matrix> read_saved_q8(const Checkpoint& checkpoint, const std::string& name,
                                        const TensorInfo& info, int64_t n, int64_t k) {
  const std::string file = checkpoint.file_of(name);
  const std::string scale_name = name + kQ8ScaleSuffix;
  KVRAG_CHECK(k % kQ8Group == 0, "{}: int8 tensor {} has {} columns, not a multiple of {}", file,
              name, k, kQ8Group);
  KVRAG_CHECK(checkpoint.has(scale_name),
              "{}: int8 tensor {} has no scales (tensor {} is missing): a saved int8 weight is "
              "a pair written by kvrag quantize",
              file, name, scale_name);
  const TensorInfo& scales = checkpoint.expect(scale_name, {n, k / kQ8Group});
  KVRAG_CHECK(scales.dtype == DType::F32, "{}: tensor {} has dtype {}, expected F32",
              checkpoint.file_of(scale_name), scale_name, dtype_name(scales.dtype));
  auto q8 = std::make_shared<Q8Matrix>();
  q8->rows = n;
  q8->cols = k;
  q8->q.resize(n * k);
  q8->scales.resize(n * (k / kQ8Group));
  advise_huge_pages(q8->q.data(), q8->q.size());  // before its pages are first written
  advise_huge_pages(q8->scales.data(), q8->scales.size() * sizeof(float));
  // Copied and checked a range of rows per task, on the helper threads (a 1.1B's 1.1 GB from the
  // mapped file: one pass, as quantizing does). The kernels negate weights and multiply
  // magnitudes up to 127 (ops/q8_matmul.h): -128 would overflow.
  std::atomic<bool> has_min{false};
  const auto* src = reinterpret_cast<const int8_t*>(info.data);
  parallel_chunks(n, std::max<int64_t>(1, (int64_t{1} << 16) / k), [&](int64_t r0, int64_t r1) {
    int8_t* dst = q8->q.data() + r0 * k;
    std::memcpy(dst, src + r0 * k, (r1 - r0) * k);
    int8_t lowest = 0;
    for (int64_t i = 0; i < (r1 - r0) * k; ++i) lowest = std::min(lowest, dst[i]);
    if (lowest == -128) has_min = true;
  });
  if (has_min) {
    const auto at = std::find(q8->q.begin(), q8->q.end(), int8_t{-128}) - q8->q.begin();
    fail("{}: int8 tensor {} holds -128 at [{}, {}]; values must lie in [-127, 127]", file, name,
         at / k, at % k);
  }
  // A scale must be what quantize_q8 writes: finite and not negative.
  std::memcpy(q8->scales.data(), scales.data, q8->scales.size() * sizeof(float));
  for (size_t i = 0; i < q8->scales.size(); ++i) {
    const float s = q8->scales[i];
    KVRAG_CHECK(std::isfinite(s) && s >= 0,
                "{}: tensor {} holds scale {} at [{}, {}]; scales must be finite and not negative",
                checkpoint.file_of(scale_name), scale_name, s, i / (k / kQ8Group),
                i % (k / kQ8Group));
  }
  release_pages(info);
  release_pages(scales);
  return q8;
}

// Moves `module`'s int8 values and scales into huge pages where the kernel can
// (collapse_huge_pages). They are allocated one after another, and advise_huge_pages reaches only
// the whole 2 MiB pages inside each buffer: the pages across the boundaries between them (~15% of
// a 1.1B's weights) stayed in 4 KiB pages. Buffers are collapsed in runs whose gaps are under
// 2 MiB, so no stretch of unrelated memory is touched. Measured on the 1.1B, three alternations:
// decode 31.1-33.3 → 32.9-34.9 tok/s, loading 2.1-2.6 → 2.7-2.9 s, peak RSS unchanged.
void collapse_q8_weights(const torch::nn::Module& module) {
  std::vector<std::pair<uintptr_t, uintptr_t>> spans;  // [begin, end) of each buffer
  for (const auto& item : module.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    const auto* linear = dynamic_cast<const LinearImpl*>(item.value().get());
    if (linear == nullptr || !linear->q8) continue;
    for (const auto& [data, bytes] :
         {std::pair<const void*, size_t>{linear->q8->q.data(), linear->q8->q.size()},
          {linear->q8->scales.data(), linear->q8->scales.size() * sizeof(float)}}) {
      const auto begin = reinterpret_cast<uintptr_t>(data);
      spans.emplace_back(begin, begin + bytes);
    }
  }
  std::sort(spans.begin(), spans.end());
  constexpr uintptr_t kMaxGap = uintptr_t{2} << 20;
  for (size_t i = 0; i < spans.size();) {
    uintptr_t begin = spans[i].first, end = spans[i].second;
    for (++i; i < spans.size() && spans[i].first <= end + kMaxGap; ++i)
      end = std::max(end, spans[i].second);
    collapse_huge_pages(reinterpret_cast<void*>(begin), end - begin);
  }
}

}  // namespace

int64_t load_q8_weights(torch::nn::Module& module, const Checkpoint& checkpoint,
                        const std::string& name_prefix) {
  int64_t count = 0;
  for (const auto& item : module.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (linear == nullptr || !linear->q8) continue;
    const std::string name = name_prefix + item.key() + ".weight";
    const int64_t n = linear->q8->rows, k = linear->q8->cols;
    const TensorInfo& info = checkpoint.expect(name, {n, k});
    if (info.dtype == DType::I8) {
      auto q8 = read_saved_q8(checkpoint, name, info, n, k);
      use_fastest_q8_order(*q8);
      linear->q8 = std::move(q8);
      ++count;
      continue;
    }
    KVRAG_CHECK(info.dtype == DType::F32 || info.dtype == DType::F16 || info.dtype == DType::BF16 ||
                    info.dtype == DType::F64,
                "{}: tensor {} has dtype {}, expected a floating-point dtype",
                checkpoint.file_of(name), name, dtype_name(info.dtype));
    std::shared_ptr<Q8Matrix> q8;
    try {  // quantize_q8 names the shape and a non-finite weight's place; this adds the tensor
      if (info.dtype == DType::F32 || info.dtype == DType::BF16) {
        // From the mapped bytes (copied once by checkpoint_tensor only if unaligned).
        const auto t = checkpoint_tensor(info);  // [n, k]
        q8 = std::make_shared<Q8Matrix>(
            info.dtype == DType::F32
                ? quantize_q8(t.data_ptr<float>(), n, k)
                : quantize_q8_bf16(reinterpret_cast<const uint16_t*>(t.data_ptr()), n, k));
      } else {
        const auto t = checkpoint_tensor(info).to(torch::kFloat32).contiguous();  // [n, k]
        q8 = std::make_shared<Q8Matrix>(quantize_q8(t.data_ptr<float>(), n, k));
      }
    } catch (const Error& e) {
      fail("{}: tensor {}: {}", checkpoint.file_of(name), name, e.what());
    }
    release_pages(info);
    use_fastest_q8_order(*q8);
    linear->q8 = std::move(q8);
    ++count;
  }
  collapse_q8_weights(module);
  return count;
}

int64_t save_q8_parameters(const torch::nn::Module& module, const std::string& path,
                           const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;
  std::vector<TensorToWrite> tensors = parameters_to_write(module, std::nullopt, "", keep);
  int64_t saved = 0;
  for (const auto& item : module.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    const auto* linear = dynamic_cast<const LinearImpl*>(item.value().get());
    if (linear == nullptr || !linear->q8) continue;
    const Q8Matrix& q8 = *linear->q8;
    const std::string name = item.key() + ".weight";
    if (q8.interleaved) {  // files hold natural order: a copy of one weight at a time
      tensors.push_back({name, DType::I8, {q8.rows, q8.cols}, nullptr, [&q8](void* out) {
                           for (int64_t n = 0; n < q8.rows; ++n)
                             q8_natural_row(q8, n, static_cast<int8_t*>(out) + n * q8.cols);
                         }});
    } else {
      tensors.push_back({name, DType::I8, {q8.rows, q8.cols}, q8.q.data()});
    }
    tensors.push_back(
        {name + kQ8ScaleSuffix, DType::F32, {q8.rows, q8.groups_per_row()}, q8.scales.data()});
    ++saved;
  }
  write_safetensors(path, tensors, metadata);
  return saved;
}

void save_parameters(const torch::nn::Module& module, const std::string& path, torch::Dtype dtype,
                     const std::string& name_prefix,
                     const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;
  write_safetensors(path, parameters_to_write(module, dtype, name_prefix, keep), metadata);
}

}  // namespace kvrag
