#include "model/weights.h"

#include <sys/mman.h>
#include <unistd.h>

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

int64_t load_q8_weights(torch::nn::Module& module, const Checkpoint& checkpoint,
                        const std::string& name_prefix) {
  int64_t count = 0;
  for (const auto& item : module.named_modules(/*name_prefix=*/"", /*include_self=*/false)) {
    auto* linear = dynamic_cast<LinearImpl*>(item.value().get());
    if (linear == nullptr || !linear->q8) continue;
    const std::string name = name_prefix + item.key() + ".weight";
    const int64_t n = linear->q8->rows, k = linear->q8->cols;
    const TensorInfo& info = checkpoint.expect(name, {n, k});
    KVRAG_CHECK(info.dtype == DType::F32 || info.dtype == DType::F16 || info.dtype == DType::BF16 ||
                    info.dtype == DType::F64,
                "{}: tensor {} has dtype {}, expected a floating-point dtype",
                checkpoint.file_of(name), name, dtype_name(info.dtype));
    std::shared_ptr<const Q8Matrix> q8;
    try {  // quantize_q8 names the shape and a non-finite weight's place; this adds the tensor
      if (info.dtype == DType::F32 || info.dtype == DType::BF16) {
        // From the mapped bytes (copied once by checkpoint_tensor only if unaligned).
        const auto t = checkpoint_tensor(info);  // [n, k]
        q8 = std::make_shared<const Q8Matrix>(
            info.dtype == DType::F32
                ? quantize_q8(t.data_ptr<float>(), n, k)
                : quantize_q8_bf16(reinterpret_cast<const uint16_t*>(t.data_ptr()), n, k));
      } else {
        const auto t = checkpoint_tensor(info).to(torch::kFloat32).contiguous();  // [n, k]
        q8 = std::make_shared<const Q8Matrix>(quantize_q8(t.data_ptr<float>(), n, k));
      }
    } catch (const Error& e) {
      fail("{}: tensor {}: {}", checkpoint.file_of(name), name, e.what());
    }
    release_pages(info);
    linear->q8 = std::move(q8);
    ++count;
  }
  return count;
}

void save_parameters(const torch::nn::Module& module, const std::string& path, torch::Dtype dtype,
                     const std::string& name_prefix,
                     const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> keep;  // converted tensors stay alive until written
  std::vector<TensorToWrite> tensors;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) {
    auto t = item.value().detach().to(torch::kCPU, dtype).contiguous();
    keep.push_back(t);
    tensors.push_back(
        {name_prefix + item.key(), from_torch_dtype(dtype), t.sizes().vec(), t.data_ptr()});
  }
  write_safetensors(path, tensors, metadata);
}

}  // namespace kvrag
