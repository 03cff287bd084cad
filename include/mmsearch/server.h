// `mmsearch serve`: one process that keeps the store and the models warm and answers a JSON HTTP
// API, with the web page (src/web/) compiled into the binary. The HTTP side is cpp-httplib.
//
// Usage:
//   mmsearch::ServerOptions options;
//   options.roots = {"/home/me/photos"};
//   mmsearch::Server server(options, backend);  // binds; throws Error(kUsage) if it can't
//   std::cout << server.url() << "\n";
//   server.run();                              // until stop() (from a signal thread)
//
// Security (docs/API.md has the reasoning):
// * A bind to anything but a loopback address needs a token; every /api/ request then carries it
//   (`Authorization: Bearer T`, or `?token=T` for image URLs). Without a token only loopback
//   Host headers are answered, which defeats DNS rebinding.
// * Files and thumbnails are served only for paths the store holds under a served root whose
//   real path (symlinks resolved) is still under that root's real path.
// * Bodies, uploads' pixels, k, matrix sizes, request rate per client address and the number of
//   model or search jobs at once are bounded; sockets time out.
// * Every bad request gets a 4xx with a JSON {"error": reason}; nothing a client sends is a 500.
//
// Freshness: every request reads the store in a new snapshot, so what a concurrent
// `mmsearch index` commits is searched by the next request, without a restart.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mmsearch/encoder.h"
#include "mmsearch/image.h"
#include "mmsearch/index.h"

namespace mmsearch {

struct ServerLimits {
  std::size_t max_body_bytes = 32u << 20;       // request bodies, uploads included
  std::int64_t max_upload_pixels = 40'000'000;  // an uploaded query image (the bomb guard)
  int max_concurrent_jobs = 2;                  // queries and matrices computed at once; more wait
  double job_wait_seconds = 20;                 // longest wait for a job slot before 503
  double requests_per_second = 60;              // per client address (token bucket) before 429
  double request_burst = 200;
  int socket_timeout_seconds = 30;  // reading a request / writing a response
  std::int64_t max_k = 1000;        // offset + k of one query
  std::int64_t max_matrix_items = 200;
  int worker_threads = 16;  // connections served at once
  std::size_t thumbnail_cache_bytes = 64u << 20;
};

// An installed model, for /api/models.
struct ServedModelInfo {
  std::string name;
  std::string identity;  // bundle name + manifest hash, as the store names models
  std::string family;
  bool itm = false;
  bool is_default = false;
};

// What the server needs from the program hosting it (the CLI resolves bundles on its --models
// path and opens translators); each may be called from several threads at once.
struct ServerBackend {
  // The encoder answering for `scope` with `model` ("" = the model the scope was indexed with),
  // loaded once and kept. Throws Error(kIndex) when the scope can't be searched with it.
  std::function<std::shared_ptr<Encoder>(
      const IndexStore& store, const std::filesystem::path& scope, const std::string& model)>
      encoder_for;
  std::function<std::vector<ServedModelInfo>()> models;
  // English of texts from `lang` (cache first); empty when this build or install has no
  // translator (the API then answers 400 to "translate").
  std::function<std::vector<std::string>(const IndexStore& store, const std::string& lang,
                                         const std::vector<std::string>& texts)>
      translate;
};

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8765;                           // 0 = any free port (see Server::port)
  std::string token;                         // required for a non-loopback host
  std::vector<std::filesystem::path> roots;  // the folders served; absolute
  std::filesystem::path store_path;          // the index store (read-only)
  ServerLimits limits;
  DecodeOptions decode;  // for thumbnails and query images
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback_host(const std::string& host);

class Server {
 public:
  // Binds the socket (Error(kUsage) naming host and port when it can't, or for a non-loopback
  // host without a token); serves nothing until run().
  Server(ServerOptions options, ServerBackend backend);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;
  std::string url() const;  // http://host:port/ (with ?token= when there is one)
  // Serves until stop(); returns when every connection is closed.
  void run();
  // Thread-safe; may be called before run() returns or from another thread.
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace mmsearch
