// Options of `kvrag serve` for the HTTP server itself: address, threads, limits and who may ask
// (serve/server.h, serve/http_daemon.h).
#pragma once

#include <CLI/CLI.hpp>

#include "serve/server.h"

namespace kvrag::cli {

// Registers --host, --port, --workers, --max-queue, --max-connections, --idle-timeout,
// --request-timeout, --max-body-bytes, --max-question-bytes, --max-top-k, --api-key, --insecure,
// --allowed-host and --access-log on `cmd`, writing into `options`. The API key may also come
// from $KVRAG_API_KEY (a command line is visible to every user of the machine).
void add_server_options(CLI::App* cmd, ServerOptions& options);

}  // namespace kvrag::cli
