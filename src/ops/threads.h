// Compute threads for libtorch (and OpenMP inside it).
#pragma once

namespace kvrag {

// The thread count to use: `requested` if > 0, else $KVRAG_THREADS, else the number of cores
// this process may run on.
int resolve_threads(int requested = 0);

// Sets libtorch's intra-op threads (libtorch 1.13 starts with 1 here). Returns the count set.
// Call once at start-up, before any tensor work.
int configure_threads(int requested = 0);

}  // namespace kvrag
