// What kvrag's trainers share: the AdamW optimizer built from OptimOptions, one optimizer step
// (lr from the schedule, gradient clipping), and resumable checkpoints of a run.
//
// A run folder RUN holds, besides what each trainer exports (its best model):
//   RUN/resume/state.json             {"step", "epoch", "batch", ..., "files": {"params",
//   "optimizer"}} RUN/resume/params-STEP.safetensors  the trainable parameters, fp32
//   RUN/resume/optimizer-STEP.pt        the optimizer's state (torch serialization)
// The two data files are written (atomically) first and state.json last, so a run killed at any
// moment resumes from the last complete checkpoint; older data files are removed afterwards.
//
// Data order must be a function of (seed, epoch) and the position in the epoch ("batch"), so a
// resumed run sees exactly the batches an uninterrupted one would.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/lr_schedule.h"

namespace kvrag {

// AdamW over the parameters of `module` that require grad: decoupled weight decay on matrices
// (dim ≥ 2), none on biases and norm weights (dim 1).
std::unique_ptr<torch::optim::AdamW> make_adamw(torch::nn::Module& module,
                                                const OptimOptions& options);

// Sets every group's lr, clips the global gradient norm (if clip_norm > 0), steps and zeroes
// the gradients. Returns the gradient norm before clipping (0 when not computed).
double optimizer_step(torch::optim::Optimizer& optimizer, double lr, double clip_norm);

// Saves the trainable parameters of `module` (requires_grad) and the optimizer state with
// `state` (any JSON object; "files" is added) into RUN/resume. Creates RUN if needed.
void save_resume_point(const std::string& run_dir, const torch::nn::Module& module,
                       torch::optim::Optimizer& optimizer, nlohmann::json state);

// Loads RUN/resume if it exists: parameters into `module`, optimizer state, and the saved JSON
// into *state. Returns false if the run has no resume point. Errors name the file.
bool load_resume_point(const std::string& run_dir, torch::nn::Module& module,
                       torch::optim::Optimizer& optimizer, nlohmann::json* state);

// A permutation of [0, n) for (seed, epoch): the data order of one epoch.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch);

// `order` regrouped so that each batch holds examples of similar length (Hugging Face's
// group_by_length): every run of `group_batches` batches of `order` is sorted by lengths[i]
// (longest first) and cut into batches of `batch_size`, then the full batches are shuffled
// (seeded by seed and epoch) and a short last batch stays last. Padding to a batch's longest
// example then costs little, and examples still meet in a random order. lengths.size() must
// cover every index of `order`.
std::vector<int64_t> length_grouped_order(const std::vector<int64_t>& order,
                                          const std::vector<int64_t>& lengths, int64_t batch_size,
                                          int64_t group_batches, uint64_t seed, int64_t epoch);

}  // namespace kvrag
