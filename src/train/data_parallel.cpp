#include "train/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <thread>

#include "core/error.h"

#ifdef KVRAG_HAVE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only (no libmpi_cxx)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace kvrag {

namespace {

// Processes of the job as mpirun announces them (1 when not launched by mpirun).
int launched_size() {
  const char* n = std::getenv("OMPI_COMM_WORLD_SIZE");
  return n != nullptr ? std::max(1, std::atoi(n)) : 1;
}

#ifdef KVRAG_HAVE_MPI

void check(int status, const char* what) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  fail("data parallel: {} failed: {}", what, std::string(text, length));
}

// Polls a non-blocking collective to its end: about a millisecond of busy polling (a short
// wait costs no latency), then sleeps between polls (a long one leaves the core to others).
void wait(MPI_Request* request, const char* what) {
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    int done = 0;
    check(MPI_Test(request, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    if (std::chrono::steady_clock::now() - start > std::chrono::milliseconds(1))
      std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// MPI counts are int: long buffers go in pieces.
constexpr int64_t kMaxCount = INT_MAX / 2;

template <typename T>
void allreduce_sum_impl(T* data, int64_t n, MPI_Datatype type) {
  for (int64_t begin = 0; begin < n; begin += kMaxCount) {
    const int count = static_cast<int>(std::min(kMaxCount, n - begin));
    MPI_Request request;
    check(
        MPI_Iallreduce(MPI_IN_PLACE, data + begin, count, type, MPI_SUM, MPI_COMM_WORLD, &request),
        "MPI_Iallreduce");
    wait(&request, "MPI_Iallreduce");
  }
}

#endif  // KVRAG_HAVE_MPI

}  // namespace

Communicator& Communicator::world() {
  static Communicator* world = [] {
    auto* c = new Communicator();
    if (launched_size() <= 1) return c;
#ifdef KVRAG_HAVE_MPI
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    std::atexit(finalize_at_exit);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size_);
#else
    fail(
        "launched by mpirun for {} processes, but this kvrag was built without MPI (install "
        "libopenmpi-dev and rebuild)",
        launched_size());
#endif
    return c;
  }();
  return *world;
}

void Communicator::allreduce_sum(float* data, int64_t n) {
  if (size_ == 1) return;
#ifdef KVRAG_HAVE_MPI
  allreduce_sum_impl(data, n, MPI_FLOAT);
#endif
}

void Communicator::allreduce_sum(double* data, int64_t n) {
  if (size_ == 1) return;
#ifdef KVRAG_HAVE_MPI
  allreduce_sum_impl(data, n, MPI_DOUBLE);
#endif
}

void Communicator::allgather(const float* mine, const std::vector<int64_t>& counts, float* out) {
  KVRAG_CHECK(static_cast<int>(counts.size()) == size_,
              "data parallel: allgather needs one count per rank ({}), got {}", size_,
              counts.size());
  if (size_ == 1) {
    std::copy(mine, mine + counts[0], out);
    return;
  }
#ifdef KVRAG_HAVE_MPI
  std::vector<int> count(size_), offset(size_);
  int64_t total = 0;
  for (int r = 0; r < size_; ++r) {
    KVRAG_CHECK(total + counts[r] <= INT_MAX, "data parallel: allgather of {} values is too long",
                total + counts[r]);
    count[r] = static_cast<int>(counts[r]);
    offset[r] = static_cast<int>(total);
    total += counts[r];
  }
  MPI_Request request;
  check(MPI_Iallgatherv(mine, count[rank_], MPI_FLOAT, out, count.data(), offset.data(), MPI_FLOAT,
                        MPI_COMM_WORLD, &request),
        "MPI_Iallgatherv");
  wait(&request, "MPI_Iallgatherv");
#endif
}

void Communicator::broadcast(void* data, int64_t bytes) {
  if (size_ == 1) return;
#ifdef KVRAG_HAVE_MPI
  auto* p = static_cast<char*>(data);
  for (int64_t begin = 0; begin < bytes; begin += kMaxCount) {
    const int count = static_cast<int>(std::min(kMaxCount, bytes - begin));
    MPI_Request request;
    check(MPI_Ibcast(p + begin, count, MPI_BYTE, 0, MPI_COMM_WORLD, &request), "MPI_Ibcast");
    wait(&request, "MPI_Ibcast");
  }
#endif
}

void Communicator::broadcast(std::string* s) {
  if (size_ == 1) return;
  int64_t length = static_cast<int64_t>(s->size());
  broadcast(&length, sizeof(length));
  s->resize(static_cast<size_t>(length));
  broadcast(s->data(), length);
}

void Communicator::barrier() {
  if (size_ == 1) return;
#ifdef KVRAG_HAVE_MPI
  MPI_Request request;
  check(MPI_Ibarrier(MPI_COMM_WORLD, &request), "MPI_Ibarrier");
  wait(&request, "MPI_Ibarrier");
#endif
}

void abort_distributed_run(int code) {
#ifdef KVRAG_HAVE_MPI
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
#else
  (void)code;
#endif
}

std::pair<int64_t, int64_t> rank_slice(int64_t batch, int rank, int size) {
  const int64_t base = batch / size, extra = batch % size;
  const int64_t begin = rank * base + std::min<int64_t>(rank, extra);
  return {begin, begin + base + (rank < extra ? 1 : 0)};
}

}  // namespace kvrag
