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
// weights. Returns how many were quantized. Errors name the file and the tensor.
int64_t load_q8_weights(torch::nn::Module& module, const Checkpoint& checkpoint,
                        const std::string& name_prefix = "");

// Writes the parameters of `module` (names prefixed by `name_prefix`) to a safetensors file,
// atomically, in `dtype` (kFloat32, kBFloat16 or kFloat16).
void save_parameters(const torch::nn::Module& module, const std::string& path,
                     torch::Dtype dtype = torch::kFloat32, const std::string& name_prefix = "",
                     const std::map<std::string, std::string>& metadata = {});

}  // namespace kvrag
