// BERTScore (Zhang et al., 2020) without idf weighting or baseline rescaling: greedy matching of
// token embeddings by cosine similarity.
#pragma once

#include <ATen/core/Tensor.h>

namespace kvrag {

struct BertScore {
  double precision = 0.0;  // mean over candidate tokens of the best cosine with a reference token
  double recall = 0.0;     // mean over reference tokens of the best cosine with a candidate token
  double f1 = 0.0;
};

// candidate [n_c, H], reference [n_r, H]: one layer's hidden states of the tokens to match
// (callers leave out [CLS]/[SEP] and padding). Empty inputs score 0.
BertScore bertscore(const at::Tensor& candidate, const at::Tensor& reference);

}  // namespace kvrag
