// Headless Chromium for the page tests: the DOM of a URL after its script has run.
#pragma once

#include <array>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>

#include <unistd.h>

#include "support/test_support.h"

namespace kvrag::test {

inline std::string chromium_path() {
  if (const char* env = std::getenv("KVRAG_CHROMIUM"); env && *env) return env;
  return "/usr/bin/chromium";
}

inline bool have_chromium() { return access(chromium_path().c_str(), X_OK) == 0; }

// `text` as the DOM serialiser writes a text node.
inline std::string html_text(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '&')
      out += "&amp;";
    else if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else
      out += c;
  }
  return out;
}

// Chromium's serialised DOM of `url` after the page's script has run (virtual time lets the
// fetches finish before the dump).
inline std::string dump_dom(const std::string& url) {
  TempDir profile;
  const std::string cmd = "timeout 90 " + chromium_path() +
                          " --headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage "
                          "--no-first-run --disable-extensions --disable-background-networking "
                          "--virtual-time-budget=15000 --user-data-dir=" +
                          profile.path() + " --dump-dom '" + url + "' 2>/dev/null";
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  pclose(pipe);
  return out;
}

// The text of the element with `id` (first match; elements of the page have no nested same tag).
inline std::string element(const std::string& dom, const std::string& tag, const std::string& id) {
  std::smatch m;
  if (std::regex_search(
          dom, m,
          std::regex("<" + tag + "[^>]*id=\"" + id + "\"[^>]*>([\\s\\S]*?)</" + tag + ">"))) {
    return m[1];
  }
  return "<missing " + id + ">";
}

inline size_t count(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t pos = s.find(part); pos != std::string::npos; pos = s.find(part, pos + part.size()))
    ++n;
  return n;
}

}  // namespace kvrag::test
