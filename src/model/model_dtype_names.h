// The dtypes a model's weights can run in (--dtype, --llm-dtype): the names alone, torch-free,
// for the CLI's option checks. parse_model_dtype (model/layers.h) turns one into a torch dtype.
#pragma once

#include <string>
#include <vector>

namespace kvrag {

inline const std::vector<std::string> kModelDtypeNames = {"fp32", "bf16", "int8"};

}  // namespace kvrag
