// Contrastive objectives for training retrievers: InfoNCE with in-batch negatives (DPR,
// Contriever) and VICReg (Bardes, Ponce & LeCun 2022).
//
// InfoNCE: queries q [B, d] against passages p [N, d], N ≥ B, where p[i] is the positive of q[i]
// and every other row (the other queries' positives, then any hard negatives) is a negative:
//
//   s = q p^T / τ  [B, N]        loss = mean_i CE(s[i], i) = mean_i (logsumexp_j s[i, j] − s[i, i])
//
// With `normalize` both sides are L2-normalised first (cosine similarity). Contriever does not
// normalise (τ = 0.05) and searches by inner product, which is what kvrag's index does, so the
// default leaves the vectors as they are.
//
// VICReg on two views a, b [B, d] (here: query and passage embeddings), as in the paper's code:
//
//   invariance  = mean((a − b)²)
//   variance    = mean_k relu(1 − sqrt(Var(a[:, k]) + ε)) / 2 + the same for b  (Var unbiased)
//   covariance  = Σ_{k≠l} C(a)[k, l]² / d + the same for b,  C = centred aᵀa / (B − 1)
//   loss        = λ·invariance + μ·variance + ν·covariance,  (λ, μ, ν) = (25, 25, 1) by default
//
// It has no negatives: nothing pushes a question away from other passages except the variance
// term, which is why (as in the reference system) it ranks worse than InfoNCE.
#pragma once

#include <torch/torch.h>

namespace kvrag {

// Mean InfoNCE loss (a scalar). `exclude` (optional, bool [B, N]) removes logits from the
// softmax, e.g. a hard negative or another query's positive that is in fact the same passage as
// q[i]'s positive; exclude[i][i] must be false. Error on mismatched shapes, N < B or τ ≤ 0.
torch::Tensor info_nce_loss(const torch::Tensor& queries, const torch::Tensor& passages,
                            double temperature, bool normalize = false,
                            const torch::Tensor& exclude = {});

struct VicRegCoefficients {
  double invariance = 25.0;
  double variance = 25.0;
  double covariance = 1.0;
  double eps = 1e-4;
};

struct VicRegTerms {
  torch::Tensor invariance, variance, covariance, loss;  // scalars; loss is the weighted sum
};

// VICReg on a, b [B, d] (B ≥ 2). Error on mismatched shapes or B < 2.
VicRegTerms vicreg_loss(const torch::Tensor& a, const torch::Tensor& b,
                        const VicRegCoefficients& c = {});

}  // namespace kvrag
