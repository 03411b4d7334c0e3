// Moving weights between safetensors checkpoints and torch modules, by Hugging Face name.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/safetensors.h"

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

// Writes the parameters of `module` (names prefixed by `name_prefix`) to a safetensors file,
// atomically, in `dtype` (kFloat32, kBFloat16 or kFloat16).
void save_parameters(const torch::nn::Module& module, const std::string& path,
                     torch::Dtype dtype = torch::kFloat32, const std::string& name_prefix = "",
                     const std::map<std::string, std::string>& metadata = {});

}  // namespace kvrag
