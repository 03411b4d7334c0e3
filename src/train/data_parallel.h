// Data-parallel training over MPI (`mpirun -np N kvrag train-retriever|train-prefix …`): the
// processes ("ranks") of one run and the few collective operations the trainers need.
//
// Communicator::world() is MPI's world when the process was launched by Open MPI's mpirun
// (OMPI_COMM_WORLD_SIZE in the environment, more than 1 process) and a single-process
// communicator otherwise, whose operations do nothing: a plain `kvrag train-*` never initialises
// MPI and runs exactly as before. MPI_Init is called on the first world() of such a process.
//
// Why MPI and not libtorch's c10d: Debian's libtorch 1.13 has no MPI process group
// (ProcessGroupMPI is not built) and its Gloo one needs libgloo-dev's headers, a rendezvous
// store (TCP or a shared file) that mpirun would have to set up anyway, and talks TCP even
// between processes of one machine. MPI_Allreduce on one flat fp32 buffer per optimizer step is
// all the trainers need, and Open MPI moves it through shared memory on one machine and the
// fastest network it finds across machines.
//
// Waiting ranks do not spin: every collective is started non-blocking and polled with short
// sleeps, so a rank that waits (for rank 0's validation, or a slower rank) leaves its core to the
// others (mpirun --oversubscribe on a small machine).
//
// This header is torch-free; train/rank_sync.h moves tensors through it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace kvrag {

class Communicator {
 public:
  // The processes of this run (see above). Error if launched by mpirun for N > 1 processes in a
  // build without MPI.
  static Communicator& world();

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  bool distributed() const { return size_ > 1; }

  // Element-wise sums over all ranks, in place (data: n values on every rank).
  void allreduce_sum(float* data, int64_t n);
  void allreduce_sum(double* data, int64_t n);
  // out (sum of counts values) = every rank's `mine` (counts[rank] values) in rank order.
  void allgather(const float* mine, const std::vector<int64_t>& counts, float* out);
  // Rank 0's bytes to every rank (same `bytes` on all).
  void broadcast(void* data, int64_t bytes);
  // Rank 0's string to every rank (any length).
  void broadcast(std::string* s);
  void broadcast(double* value) { broadcast(value, sizeof(double)); }
  void barrier();

 private:
  Communicator() = default;
  int rank_ = 0, size_ = 1;
};

// After an error on this process of an MPI job that world() has started: ends every rank with
// `code`, so that none waits forever in a collective. Does nothing otherwise (MPI never started:
// a single process, or a command that does not train).
void abort_distributed_run(int code);

// Rows [begin, end) of a global batch of `batch` rows that `rank` of `size` computes:
// contiguous, sizes differing by at most one.
std::pair<int64_t, int64_t> rank_slice(int64_t batch, int rank, int size);

// Runs `fn` on rank 0 first, then (after a barrier) on the other ranks: for steps that create a
// file the others then read (shared run folder) or create the same way (one folder per machine).
template <typename F>
void root_first(Communicator& comm, F&& fn) {
  if (comm.is_root()) fn();
  comm.barrier();
  if (!comm.is_root()) fn();
}

}  // namespace kvrag
