// One writer per folder: an advisory lock (flock(2)) on DIR/.kvrag.lock, held while a
// FolderLock lives. `kvrag segment`, `index build` and `index merge` hold their index folder
// exclusively; the shards of `kvrag embed` hold it shared (they write disjoint files) and each
// holds its own shard's lock exclusively. A second writer fails at once with an Error naming the
// folder and the holder's PID and job; readers take no lock and are unaffected. The kernel
// releases the lock when the holder exits, however it exits (kill -9 included), so a lock is
// never stale; the file itself stays (it only names the last exclusive holder).
#pragma once

#include <string>

namespace kvrag {

enum class LockMode { kExclusive, kShared };

class FolderLock {
 public:
  // Locks DIR/`name` (creating DIR and the file) for `job` (e.g. "kvrag segment"), without
  // waiting: Error naming DIR, the holder (PID and job, where an exclusive holder wrote them) and
  // `job` when another FolderLock holds it in a conflicting mode.
  FolderLock(const std::string& dir, LockMode mode, const std::string& job,
             const std::string& name = ".kvrag.lock");
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  bool exclusive_ = false;
};

}  // namespace kvrag
