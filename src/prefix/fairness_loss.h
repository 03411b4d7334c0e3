// Which fairness term knowledge-encoder training adds (train-prefix --fairness-loss; the terms
// are in prefix/fairness_terms.h). Torch-free, for option structs.
#pragma once

#include "core/enum_names.h"

namespace kvrag {

enum class FairnessLoss { kCounterfactual, kDecorrelation, kBoth };
template <>
struct EnumNames<FairnessLoss> {
  static constexpr const char* what = "fairness loss";
  static constexpr EnumName<FairnessLoss> values[] = {
      {FairnessLoss::kCounterfactual, "counterfactual"},
      {FairnessLoss::kDecorrelation, "decorrelation"},
      {FairnessLoss::kBoth, "both"}};
};
inline bool uses_counterfactual(FairnessLoss l) { return l != FairnessLoss::kDecorrelation; }
inline bool uses_decorrelation(FairnessLoss l) { return l != FairnessLoss::kCounterfactual; }

}  // namespace kvrag
