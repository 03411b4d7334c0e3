#include "cli/server_options.h"

#include "cli/number_check.h"

namespace kvrag::cli {

void add_server_options(CLI::App* cmd, ServerOptions& o) {
  HttpLimits& h = o.http;
  cmd->add_option("--host", h.host,
                  "address to listen on (127.0.0.1: this machine only; any other needs --api-key "
                  "or --insecure)")
      ->capture_default_str();
  cmd->add_option("--port", h.port, "port (0: any free one)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--workers", h.workers, "threads answering questions (sharing the models)")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_option("--max-queue", h.max_queue,
                  "questions waiting for a worker beyond this many get 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--max-connections", h.max_connections, "open connections at most")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option(
         "--idle-timeout", h.idle_timeout_s,
         "seconds a connection may send nothing (stalled headers or body, idle keep-alive)")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--request-timeout", h.request_timeout_s,
                  "seconds a whole request (headers and body) may take")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--max-body-bytes", h.max_body_bytes, "larger request bodies are refused (413)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{64}, size_t{64} << 20));
  cmd->add_option("--max-question-bytes", o.max_question_bytes,
                  "longer questions are refused (400)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  cmd->add_option("--max-top-k", o.max_top_k, "largest top_k a request may ask for")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--api-key", h.api_key,
                  "clients must send \"Authorization: Bearer KEY\" (the page: open it as "
                  "URL#key=KEY)")
      ->envname("KVRAG_API_KEY");
  cmd->add_flag("--insecure", h.insecure,
                "allow a non-loopback --host without an API key (anyone who can reach it may ask)");
  cmd->add_option("--allowed-host", h.allowed_hosts,
                  "another name the Host header may carry besides localhost and the --host "
                  "address (repeatable; without --api-key other names are refused: DNS rebinding)");
  cmd->add_flag("--access-log", o.access_log, "print one line per request on stderr");
}

}  // namespace kvrag::cli
