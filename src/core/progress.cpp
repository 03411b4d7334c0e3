// Rate-limited progress lines (see progress.h).
#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace kvrag {

ProgressReporter::ProgressReporter(ProgressOptions options) : options_(std::move(options)) {
  tty_ = options_.out != nullptr && isatty(fileno(options_.out));
  if (options_.interval_s < 0) options_.interval_s = tty_ ? 0.2 : 5.0;
  if (options_.out == nullptr) options_.enabled = false;
  start_ = last_draw_ = Clock::now();
}

ProgressReporter::~ProgressReporter() { break_line(); }

std::string ProgressReporter::format(int64_t bytes_done, int64_t items_done,
                                     double elapsed_s) const {
  const int64_t items = items_done - options_.start_items;
  const int64_t bytes = bytes_done - options_.start_bytes;
  std::string s = fmt::format("{}: {} {}", options_.label, format_count(items_done), options_.unit);
  if (elapsed_s > 0) {
    // Slow items (training steps) get a decimal rate: "(0/s)" would say nothing.
    const double rate = items / elapsed_s;
    s += rate < 10 ? fmt::format(" ({:.2g}/s)", rate)
                   : fmt::format(" ({}/s)", format_count(static_cast<int64_t>(rate)));
  }
  if (options_.total_bytes > 0) {
    const double pct = 100.0 * static_cast<double>(bytes_done) / options_.total_bytes;
    s += fmt::format("  {} / {} ({:.1f}%)", format_bytes(bytes_done),
                     format_bytes(options_.total_bytes), std::min(pct, 100.0));
    if (bytes > 0 && elapsed_s > 0 && bytes_done < options_.total_bytes) {
      const double rate = bytes / elapsed_s;  // bytes per second, this run
      s += "  ETA " + format_duration((options_.total_bytes - bytes_done) / rate);
    }
  } else if (options_.total_items > 0) {
    const double pct = 100.0 * static_cast<double>(items_done) / options_.total_items;
    s += fmt::format(" of {} ({:.1f}%)", format_count(options_.total_items), std::min(pct, 100.0));
    if (items > 0 && elapsed_s > 0 && items_done < options_.total_items) {
      s += "  ETA " + format_duration((options_.total_items - items_done) / (items / elapsed_s));
    }
  }
  if (!note_.empty()) s += "  " + note_;
  return s;
}

void ProgressReporter::draw(int64_t bytes_done, int64_t items_done, bool final) {
  const auto now = Clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const std::string text = format(bytes_done, items_done, elapsed);
  if (tty_) {
    // \x1b[K clears what a longer previous line left behind.
    std::fprintf(options_.out, "\r%s\x1b[K", text.c_str());
    line_open_ = !final;
    if (final) std::fputc('\n', options_.out);
  } else {
    std::fprintf(options_.out, "%s\n", text.c_str());
  }
  std::fflush(options_.out);
  last_draw_ = now;
}

void ProgressReporter::update(int64_t bytes_done, int64_t items_done) {
  if (!options_.enabled) return;
  const auto now = Clock::now();
  if (std::chrono::duration<double>(now - last_draw_).count() < options_.interval_s) return;
  draw(bytes_done, items_done, false);
}

void ProgressReporter::finish(int64_t bytes_done, int64_t items_done) {
  if (!options_.enabled) return;
  draw(bytes_done, items_done, true);
}

void ProgressReporter::break_line() {
  if (!line_open_) return;
  std::fputc('\n', options_.out);
  std::fflush(options_.out);
  line_open_ = false;
}

}  // namespace kvrag
