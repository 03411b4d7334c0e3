// Tensors and training state through the Communicator (train/data_parallel.h): what the
// trainers call so that N ranks take the optimizer steps one process would take with the same
// global batch. Every function here is collective: all ranks call it, in the same order. In a
// single process they reduce to the plain operations of train/train_state.h.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/data_parallel.h"

namespace kvrag {

// Sums the gradients of `params` over all ranks, through one flat fp32 buffer (one allreduce per
// optimizer step). A gradient undefined on every rank stays undefined (AdamW skips it, as in one
// process); one defined on some rank counts as zero where it is not.
void allreduce_gradients(const std::vector<torch::Tensor>& params, Communicator& comm);

// The trainable parameters (requires_grad) of `module`, as allreduce_gradients takes them.
std::vector<torch::Tensor> trainable_parameters(const torch::nn::Module& module);

// [rows of this rank, H] → [global_rows, H]: the rows of every rank (rank_slice of global_rows)
// in rank order. This rank's rows stay in the autograd graph; the others are constants here.
// Each rank then computes the whole batch's loss and backpropagates into its own rows only:
// summed over ranks (allreduce_gradients), the parameter gradients are the whole batch's.
torch::Tensor gather_rows(const torch::Tensor& local, int64_t global_rows, Communicator& comm);

// FNV-1a (core/fingerprint.h, add_words) of the trainable parameters' fp32 bytes, by name order.
std::string parameter_fingerprint(const torch::nn::Module& module);

// Every rank's parameter_fingerprint, in rank order. Error naming `where` if they differ.
std::vector<std::string> check_ranks_agree(const torch::nn::Module& module, Communicator& comm,
                                           const std::string& where);

// load_resume_point on rank 0, its state, parameters and optimizer state then copied to every
// rank (the run folder need not be shared). Without a resume point, rank 0's parameters are
// copied (every rank starts from the same model). Error if the saved run was trained on another
// number of ranks ("ranks" in state.json; 1 when absent). Returns whether the run resumes.
bool load_resume_point_on_ranks(const std::string& run_dir, torch::nn::Module& module,
                                torch::optim::Optimizer& optimizer, nlohmann::json* state,
                                Communicator& comm);

// Checks that the ranks agree (check_ranks_agree), then rank 0 writes the resume point
// (save_resume_point) with "ranks" added to `state`.
void save_resume_point_on_ranks(const std::string& run_dir, const torch::nn::Module& module,
                                torch::optim::Optimizer& optimizer, nlohmann::json state,
                                Communicator& comm);

}  // namespace kvrag
