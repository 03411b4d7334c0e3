// Moving weights between safetensors checkpoints and torch modules, by Hugging Face name.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/safetensors.h"
#include "model/layers.h"

namespace kvrag {

// A tensor over the checkpoint's mapped bytes, in the stored dtype. It does not own the data:
// use it before the Checkpoint goes away (typically: copy_ into a parameter). Unaligned data
// (legal in safetensors) is copied once.
torch::Tensor checkpoint_tensor(const TensorInfo& info);

torch::Dtype to_torch_dtype(DType dtype);  // F32/F16/BF16/I64/…; Error for unsupported ones
DType from_torch_dtype(torch::Dtype dtype);

// Copies each parameter of `module` from the checkpoint tensor named `name_prefix + name`,
// converting to the parameter's dtype in one pass (no intermediate copy). Every parameter must
// be present with the parameter's shape, except those for which `optional(name)` is true; the
// names of those that were absent are returned. Errors name the file and the tensor.
std::vector<std::string> load_parameters(
    torch::nn::Module& module, const Checkpoint& checkpoint, const std::string& name_prefix = "",
    const std::function<bool(const std::string&)>& optional = {});

// Fills every Linear of `module` that holds its weight as int8 (LinearImpl::q8, model/layers.h)
// by quantizing the checkpoint tensor `name_prefix + <module name> + ".weight"`, one weight at a
// time: fp32 and bf16 tensors are quantized straight from the mapped file, others through one
// temporary fp32 copy of that weight alone, so a load never holds a float copy of the int8
// weights; saved int8 weights (above) are copied, after checking their values and scales. Each is
// then left in the order its CPU level multiplies fastest (use_fastest_q8_order, ops/q8_matmul.h).
// Returns how many were filled. Errors name the file and the tensor.
int64_t load_q8_weights(torch::nn::Module& module, const Checkpoint& checkpoint,
                        const std::string& name_prefix = "");

// Saved int8 weights (`kvrag quantize`, write_int8_llama in model/llama.h): a Linear's int8
// weight NAME ("….weight") is stored as NAME, I8 [out, in] with values in [-127, 127], and
// NAME + kQ8ScaleSuffix, F32 [out, in/32]: each group's scale (ops/q8_matmul.h). load_q8_weights
// copies such a pair as it is, so that an int8 load makes no pass over float weights (a 7B's
// 13.5 GB of bf16); a float load of one is an error that says to load it with --dtype int8.
inline constexpr const char* kQ8ScaleSuffix = "_scale";

// Writes every parameter of `module` in its own dtype and every int8 weight (LinearImpl::q8) as
// the pair above, values in natural order (a weight held in the decode order is reordered as it
// is written, one at a time), to a safetensors file, atomically.
// Returns how many int8 weights it wrote.
int64_t save_q8_parameters(const torch::nn::Module& module, const std::string& path,
                           const std::map<std::string, std::string>& metadata = {});

// Writes the parameters of `module` (names prefixed by `name_prefix`) to a safetensors file,
// atomically, in `dtype` (kFloat32, kBFloat16 or kFloat16).
void save_parameters(const torch::nn::Module& module, const std::string& path,
                     torch::Dtype dtype = torch::kFloat32, const std::string& name_prefix = "",
                     const std::map<std::string, std::string>& metadata = {});

}  // namespace kvrag
