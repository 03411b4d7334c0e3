// Progress of a long job, reported on a stream (stderr by default).
//
// A job that works through a known number of bytes (a corpus file, a matrix on disk) calls
// update(bytes_done, items_done) as often as it likes; the reporter redraws at most every
// `interval_s` seconds:
//
//   segment: 1,204,000 documents (8,412/s)  4.1 GiB / 13.0 GiB (31.5%)  ETA 17m03s
//
// On a terminal the line is redrawn in place with '\r' (every 0.2 s by default); otherwise
// (a log file, CI) a full line is written every 5 s, so logs stay readable. Rates and the ETA
// count only the work of this run: a resumed job passes the position it resumed from as
// `start_bytes` / `start_items`.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

// format_bytes, format_count, format_duration: the numbers of a progress line
#include "core/units.h"

namespace kvrag {

struct ProgressOptions {
  std::string label = "progress";  // "segment", "embed", …
  std::string unit = "items";      // what update() counts: "documents", "segments", …
  int64_t total_bytes = 0;         // 0: unknown (no percentage, no ETA)
  int64_t start_bytes = 0;         // bytes already done when this run started (resume)
  int64_t start_items = 0;         // items already done when this run started
  int64_t total_items = 0;         // used for percentage and ETA when total_bytes is 0
  std::FILE* out = stderr;
  double interval_s = -1;  // < 0: 0.2 s on a terminal, 5 s otherwise
  bool enabled = true;     // false: report nothing (quiet mode, tests)
};

class ProgressReporter {
 public:
  explicit ProgressReporter(ProgressOptions options);
  ~ProgressReporter();  // finishes a redrawn line with a newline, if one is open
  ProgressReporter(const ProgressReporter&) = delete;
  ProgressReporter& operator=(const ProgressReporter&) = delete;

  // Cheap unless it is time to redraw (one clock read).
  void update(int64_t bytes_done, int64_t items_done);
  // Draws the final state unconditionally and ends the line.
  void finish(int64_t bytes_done, int64_t items_done);
  // Ends an open '\r' line, so that other output (a warning) starts on a fresh line.
  void break_line();
  // Text appended to every status line from now on ("loss 2.314  lr 3.0e-04"): training loops
  // set it before update().
  void set_note(std::string note) { note_ = std::move(note); }

  // The status text without '\r' or newline (exposed for tests).
  std::string format(int64_t bytes_done, int64_t items_done, double elapsed_s) const;

 private:
  void draw(int64_t bytes_done, int64_t items_done, bool final);

  using Clock = std::chrono::steady_clock;
  ProgressOptions options_;
  std::string note_;
  bool tty_ = false;
  bool line_open_ = false;  // a '\r' line is on the terminal without its newline
  Clock::time_point start_, last_draw_;
};

}  // namespace kvrag
