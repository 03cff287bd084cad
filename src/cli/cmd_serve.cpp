// `mmsearch serve`: the HTTP API and web page over the indexed folders (mmsearch/server.h,
// docs/API.md), with models and vectors kept warm between requests.
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/error.h"
#include "mmsearch/server.h"
#include "mmsearch/translation.h"
#include "translation_hook.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {
namespace {

// Written by the signal handler, read by the thread that stops the server.
int stop_pipe[2] = {-1, -1};

std::string generated_token() {
  unsigned char bytes[24];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    throw Error(ErrorKind::kInternal, "could not draw a random token (OpenSSL RAND_bytes)");
  }
  static const char* const kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string token;
  for (const unsigned char b : bytes) token.push_back(kAlphabet[b & 63]);
  return token;
}

// Encoders and translators opened on first use and kept: the point of a server.
class WarmModels {
 public:
  // default_model: serve's --model, used when a request names none ("" = as indexed).
  WarmModels(const GlobalOptions& global, std::string default_model)
      : global_(global), default_model_(std::move(default_model)) {}

  std::shared_ptr<Encoder> encoder_for(const IndexStore& store, const fs::path& scope,
                                       const std::string& requested) {
    const std::string& model = requested.empty() ? default_model_ : requested;
    // Resolving a scope's model reads the model search path; it is redone only when the models
    // indexed under the scope change.
    std::string key = scope.string() + "\n" + model + "\n";
    for (const auto& id : store.model_ids_in_scope(scope)) key += id + ";";
    std::lock_guard<std::mutex> guard(mutex_);
    if (const auto it = by_scope_.find(key); it != by_scope_.end()) return it->second;
    std::optional<Bundle> found;
    try {
      found = bundle_for_scope(global_, store, scope, model);
    } catch (const Error& e) {
      // A model the client named that is not installed is the request's fault.
      if (e.kind() == ErrorKind::kModel && !model.empty()) {
        throw Error(ErrorKind::kUsage, std::string("\"model\": ") + e.what());
      }
      throw;
    }
    const Bundle& bundle = *found;
    auto& encoder = by_identity_[bundle.identity()];
    if (!encoder) {
      spdlog::info("loading {} ({})", bundle.manifest().name, bundle.identity());
      encoder = open_encoder(global_, bundle);
      encoder->load_modules(false, true, false);
    }
    // Clients choose the folders, so the remembered resolutions are bounded; the encoders
    // themselves stay loaded.
    if (by_scope_.size() >= kRememberedScopes) by_scope_.clear();
    by_scope_[key] = encoder;
    return encoder;
  }

  std::vector<ServedModelInfo> models() {
    const auto listings = discover_bundles(model_search_path(global_.models_dir), false);
    std::string fallback;
    try {
      fallback = default_model_name(listings);
    } catch (const Error&) {
    }
    std::vector<ServedModelInfo> out;
    for (const auto& listing : listings) {
      if (!listing.bundle) continue;
      const Manifest& manifest = listing.bundle->manifest();
      out.push_back({listing.name, listing.bundle->identity(), listing.family, manifest.itm,
                     listing.name == fallback});
    }
    return out;
  }

  std::vector<std::string> translate(const IndexStore& store, const std::string& lang,
                                     const std::vector<std::string>& texts) {
    std::lock_guard<std::mutex> guard(translate_mutex_);
    auto& translator = translators_[lang];
    if (!translator) {
      TranslationRequest request;
      request.source_lang = lang;
      try {
        translator = open_translator(global_, request);
      } catch (const Error& e) {
        throw Error(ErrorKind::kUsage, std::string("\"translate\": ") + e.what());
      }
    }
    const CachedTranslations found = translate_cached(store, *translator, texts);
    std::vector<std::string> english;
    for (const auto& text : texts) {
      const auto it = found.english.find(text);
      english.push_back(it == found.english.end() ? std::string() : it->second);
    }
    return english;
  }

 private:
  static constexpr std::size_t kRememberedScopes = 4096;
  const GlobalOptions& global_;
  const std::string default_model_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Encoder>> by_scope_;
  std::map<std::string, std::shared_ptr<Encoder>> by_identity_;
  std::mutex translate_mutex_;
  std::map<std::string, std::unique_ptr<LazyTranslator>> translators_;
};

}  // namespace

Command register_serve(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("serve", "Search in a browser, or over HTTP (JSON API)");
  app->footer(
      "Opens nothing itself: it prints the URL to open. Stops on Ctrl-C (SIGINT) or SIGTERM.\n"
      "Examples:\n"
      "  mmsearch serve ~/Pictures/dishes\n"
      "  mmsearch serve --port 0 --json            # any free port; the URL as JSON\n"
      "  mmsearch serve --host 0.0.0.0 --token generate\n"
      "  curl -s localhost:8765/api/query -d '{\"text\": \"a pizza\", \"k\": 5}'\n"
      "The API: docs/API.md.");
  struct Options {
    std::vector<std::string> folders;
    std::string host = "127.0.0.1";
    int port = 8765;
    std::string token;
    std::string model;
    int jobs = 2;
    double rate = -1;  // unset: 60 for a non-loopback host, no limit on loopback
    double max_upload_mb = 32;
    std::int64_t max_upload_pixels = 40'000'000;
    int timeout = 30;
    bool json = false;
    bool no_exif = false;
  };
  auto options = std::make_shared<Options>();
  app->add_option("folders", options->folders,
                  "Indexed folders to serve (default: the current folder)");
  app->add_option("--host", options->host,
                  "Address to listen on (default 127.0.0.1; any other needs --token)");
  app->add_option("--port", options->port, "Port (default 8765; 0 = any free port)")
      ->check(CLI::Range(0, 65535));
  app->add_option("--token", options->token,
                  "Bearer token every API request must carry; 'generate' draws one and prints "
                  "it once");
  app->add_option("--model,-m", options->model,
                  "Model of requests that name none (default: the one each folder was indexed "
                  "with); loaded at start");
  app->add_option("--jobs", options->jobs, "Queries computed at once; more wait (default 2)")
      ->check(CLI::Range(1, 64));
  app->add_option("--rate", options->rate,
                  "Requests per second per client address before 429 (default: 60 with a "
                  "non-loopback --host, none on loopback; 0 = no limit)")
      ->check(CLI::Range(0.0, 1e6));
  app->add_option("--max-upload", options->max_upload_mb,
                  "Largest request body, uploads included, in MB (default 32)")
      ->check(CLI::Range(0.01, 4096.0));
  app->add_option("--max-upload-pixels", options->max_upload_pixels,
                  "Most pixels of an uploaded query image (default 40000000)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 36));
  app->add_option("--timeout", options->timeout,
                  "Seconds to read a request or write a response, and to wait for a free job "
                  "(default 30)")
      ->check(CLI::Range(1, 3600));
  app->add_flag("--json", options->json, "Print the address as one JSON line");
  app->add_flag("--no-exif-rotate", options->no_exif, "Ignore EXIF orientation (strict LAVIS)");

  return {
      app, [&global, options]() {
        ServerOptions server;
        server.host = options->host;
        server.port = options->port;
        server.token = options->token == "generate" ? generated_token() : options->token;
        server.store_path = default_index_path();
        server.decode.apply_exif_orientation = !options->no_exif;
        server.limits.max_concurrent_jobs = options->jobs;
        // On loopback every client is the user's own machine (a browser, a script, the bench's
        // 20 clients), so only an exposed server limits the rate unless --rate says otherwise.
        const double rate = options->rate >= 0                ? options->rate
                            : is_loopback_host(options->host) ? 0.0
                                                              : 60.0;
        server.limits.requests_per_second = rate;
        server.limits.request_burst = std::max(20.0, rate * 3);
        server.limits.max_body_bytes = static_cast<std::size_t>(options->max_upload_mb * (1 << 20));
        server.limits.max_upload_pixels = options->max_upload_pixels;
        server.limits.socket_timeout_seconds = options->timeout;
        server.limits.job_wait_seconds = options->timeout;
        if (options->folders.empty()) options->folders.push_back(fs::current_path().string());
        for (const auto& folder : options->folders) {
          std::error_code ec;
          if (!fs::is_directory(folder, ec)) {
            throw Error(ErrorKind::kInput, folder + ": not a folder; serve takes indexed folders");
          }
          server.roots.push_back(normalize_index_path(fs::absolute(folder)));
        }

        auto models = std::make_shared<WarmModels>(global, options->model);
        ServerBackend backend;
        backend.encoder_for = [models](const IndexStore& store, const fs::path& scope,
                                       const std::string& model) {
          return models->encoder_for(store, scope, model);
        };
        backend.models = [models] { return models->models(); };
        backend.translate = [models](const IndexStore& store, const std::string& lang,
                                     const std::vector<std::string>& texts) {
          return models->translate(store, lang, texts);
        };

        // Loaded before the first request, so that it is answered warm. A folder not
        // indexed yet is served anyway: what `mmsearch index` adds is found without a
        // restart.
        std::error_code ec;
        if (fs::exists(server.store_path, ec)) {
          const IndexStore store(server.store_path, IndexStore::Mode::kReadOnly);
          for (const auto& folder : server.roots) {
            try {
              models->encoder_for(store, folder, options->model);
            } catch (const Error& e) {
              // --model naming no installed bundle is the command line's mistake: say it now.
              if (e.kind() == ErrorKind::kUsage && !options->model.empty()) {
                throw Error(ErrorKind::kUsage, std::string("--model: ") + e.what());
              }
              spdlog::warn("{}", e.what());
            }
          }
        } else {
          spdlog::warn(
              "nothing has been indexed yet; run: mmsearch index DIR (the server "
              "answers as soon as it is)");
        }

        // SIGINT and SIGTERM write to a pipe that one thread watches, and it stops the
        // server. A handler rather than a blocked mask and sigwait: libtorch's and OpenBLAS's
        // threads exist already, and one of them would take the signal's default action.
        Server http(server, backend);
        if (::pipe(stop_pipe) != 0) {
          throw Error(ErrorKind::kInternal, "cannot create a pipe for signals");
        }
        struct sigaction action {};
        action.sa_handler = [](int signal) {
          const unsigned char byte = static_cast<unsigned char>(signal);
          [[maybe_unused]] const auto written = ::write(stop_pipe[1], &byte, 1);
        };
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;
        ::sigaction(SIGINT, &action, nullptr);
        ::sigaction(SIGTERM, &action, nullptr);
        std::atomic<bool> finished{false};
        std::thread signal_thread([&http, &finished] {
          unsigned char signal = 0;
          while (::read(stop_pipe[0], &signal, 1) < 0 && errno == EINTR) {
          }
          if (finished) return;
          spdlog::info("stopping (signal {})", signal);
          // A signal that comes before run() is listening would be lost by one stop().
          while (!finished) {
            http.stop();
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
          }
        });
        const std::string url = http.url();
        if (options->json) {
          nlohmann::json line = {{"url", url}, {"port", http.port()}, {"host", server.host}};
          if (!server.token.empty()) line["token"] = server.token;
          line["folders"] = nlohmann::json::array();
          for (const auto& folder : server.roots) line["folders"].push_back(folder.string());
          std::cout << json_text(line, -1) << "\n" << std::flush;
        } else {
          std::cout << "mmsearch serve: open " << url << "\n" << std::flush;
          if (!server.token.empty() && options->token == "generate") {
            std::cout << "token (shown once): " << server.token << "\n" << std::flush;
          }
        }
        spdlog::info("serving {} folder(s) on {}:{}", server.roots.size(), server.host,
                     http.port());
        http.run();
        finished = true;
        // run() returns after stop(); a stop for another reason wakes the signal thread.
        const unsigned char wake = 0;
        [[maybe_unused]] const auto woken = ::write(stop_pipe[1], &wake, 1);
        signal_thread.join();
        spdlog::info("stopped");
        return kExitOk;
      }};
}

}  // namespace mmsearch::cli
