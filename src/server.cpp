// `mmsearch serve`: sockets, the security checks every request passes, the page and shutdown.
// The endpoints are in server_api.cpp and server_files.cpp.
#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "server_impl.h"
#include "web_assets.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

// Compares in time that depends on the lengths only, so timing says nothing of a token.
bool same_secret(const std::string& given, const std::string& expected) {
  return given.size() == expected.size() &&
         CRYPTO_memcmp(given.data(), expected.data(), given.size()) == 0;
}

// "host:port", "[v6]:port" or "host" → host.
std::string host_of_header(const std::string& header) {
  if (!header.empty() && header.front() == '[') {
    const auto close = header.find(']');
    return close == std::string::npos ? header : header.substr(1, close - 1);
  }
  const auto colon = header.rfind(':');
  return colon == std::string::npos ? header : header.substr(0, colon);
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "ip6-localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  return false;
}

void reply_json(httplib::Response& response, const nlohmann::json& body, int status) {
  response.status = status;
  response.set_header("Cache-Control", "no-store");
  response.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                       "application/json; charset=utf-8");
}

void reply_error(httplib::Response& response, int status, const std::string& message) {
  reply_json(response, {{"error", message}, {"status", status}}, status);
}

int status_for(const Error& error) {
  switch (error.kind()) {
    case ErrorKind::kUsage:
    case ErrorKind::kInput:
      return 400;
    case ErrorKind::kIndex:
      return 404;
    case ErrorKind::kModel:
    case ErrorKind::kInternal:
      break;
  }
  return 500;
}

Server::Impl::Impl(ServerOptions opts, ServerBackend back)
    : options(std::move(opts)),
      backend(std::move(back)),
      stores(options.store_path),
      jobs(std::max(1, options.limits.max_concurrent_jobs)),
      thumbnail_jobs(std::max(1, options.limits.max_concurrent_jobs)),
      rate(options.limits.requests_per_second, options.limits.request_burst),
      thumbnails(options.limits.thumbnail_cache_bytes) {
  for (const auto& root : options.roots) {
    roots.push_back(normalize_index_path(root));
    std::error_code ec;
    const fs::path real = fs::canonical(root, ec);
    real_roots.push_back(ec ? roots.back() : real);
  }
}

std::mutex& Server::Impl::lock_for(const Encoder& encoder) {
  std::lock_guard<std::mutex> guard(encoder_locks_mutex);
  auto& slot = encoder_locks[&encoder];
  if (!slot) slot = std::make_unique<std::mutex>();
  return *slot;
}

std::optional<fs::path> Server::Impl::root_of(const std::string& path) const {
  for (const auto& root : roots) {
    const std::string r = root.string();
    if (path == r || (path.size() > r.size() && path.compare(0, r.size(), r) == 0 &&
                      (r.back() == '/' || path[r.size()] == '/'))) {
      return root;
    }
  }
  return std::nullopt;
}

void Server::Impl::add_routes() {
  http.set_pre_routing_handler(
      [this](const httplib::Request& request, httplib::Response& response) {
        ++requests;
        // Without a token, only loopback names are answered: a page elsewhere that rebinds its own
        // name to 127.0.0.1 sends its own Host, and is refused here.
        if (options.token.empty()) {
          const std::string host = host_of_header(request.get_header_value("Host"));
          if (!host.empty() && !is_loopback_host(host)) {
            reply_error(response, 403,
                        "Host " + host +
                            " is not this machine; open the URL printed "
                            "by mmsearch serve");
            return httplib::Server::HandlerResponse::Handled;
          }
        }
        if (request.path.rfind("/api/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
        double retry_after = 0;
        if (!rate.allow(request.remote_addr, retry_after)) {
          response.set_header("Retry-After", std::to_string(static_cast<int>(retry_after) + 1));
          reply_error(response, 429,
                      "too many requests from " + request.remote_addr + "; the limit is " +
                          std::to_string(options.limits.requests_per_second) +
                          " per second (mmsearch serve --rate)");
          return httplib::Server::HandlerResponse::Handled;
        }
        if (!options.token.empty()) {
          std::string given;
          const std::string auth = request.get_header_value("Authorization");
          if (auth.rfind("Bearer ", 0) == 0)
            given = auth.substr(7);
          else if (request.has_param("token"))
            given = request.get_param_value("token");
          if (given.empty() || !same_secret(given, options.token)) {
            response.set_header("WWW-Authenticate", "Bearer");
            reply_error(response, 401,
                        given.empty() ? "this server needs its token: send 'Authorization: Bearer "
                                        "TOKEN' (the token mmsearch serve printed)"
                                      : "wrong token");
            return httplib::Server::HandlerResponse::Handled;
          }
        }
        return httplib::Server::HandlerResponse::Unhandled;
      });
  http.set_post_routing_handler([this](const httplib::Request&, httplib::Response& response) {
    if (response.status >= 500)
      ++server_errors;
    else if (response.status >= 400)
      ++client_errors;
    response.set_header("X-Content-Type-Options", "nosniff");
    response.set_header("Referrer-Policy", "no-referrer");
    response.set_header("X-Frame-Options", "DENY");
  });
  http.set_exception_handler(
      [](const httplib::Request& request, httplib::Response& response, std::exception_ptr error) {
        try {
          std::rethrow_exception(error);
        } catch (const HttpError& e) {
          reply_error(response, e.status(), e.what());
        } catch (const Error& e) {
          const int status = status_for(e);
          if (status >= 500) spdlog::error("{} {}: {}", request.method, request.path, e.what());
          reply_error(response, status, e.what());
        } catch (const std::bad_alloc&) {
          spdlog::error("{} {}: out of memory", request.method, request.path);
          reply_error(response, 503, "out of memory; try a smaller request");
        } catch (const std::exception& e) {
          spdlog::error("{} {}: {}", request.method, request.path, e.what());
          reply_error(response, 500, std::string("internal error: ") + e.what());
        }
      });
  http.set_error_handler([](const httplib::Request& request, httplib::Response& response) {
    if (!response.body.empty()) return;  // a handler's own error reply
    if (response.status == 404) {
      reply_error(response, 404, "no such page or endpoint: " + request.path + " (docs/API.md)");
    } else if (response.status == 413) {
      reply_error(response, 413, "the request body is too large (mmsearch serve --max-upload)");
    } else if (response.status == 400) {
      reply_error(response, 400, "malformed HTTP request");
    } else {
      reply_error(response, response.status, "request failed");
    }
  });

  // The page: three embedded files. The policy allows nothing from elsewhere, so a page that
  // tried to load a script or send a request off the machine would be stopped by the browser.
  auto serve_asset = [](const char* name) {
    return [name](const httplib::Request&, httplib::Response& response) {
      const WebAsset* asset = find_web_asset(name);
      if (!asset) return reply_error(response, 404, std::string("no asset ") + name);
      response.set_header("Content-Security-Policy",
                          "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                          "script-src 'self'; connect-src 'self'; frame-ancestors 'none'");
      response.set_header("Cache-Control", "no-cache");
      response.set_content(std::string(reinterpret_cast<const char*>(asset->data), asset->size),
                           asset->mime);
    };
  };
  http.Get("/", serve_asset("index.html"));
  http.Get("/index.html", serve_asset("index.html"));
  http.Get("/static/app.js", serve_asset("app.js"));
  http.Get("/static/app.css", serve_asset("app.css"));
  http.Get("/favicon.ico", serve_asset("favicon.svg"));
  http.Get("/static/favicon.svg", serve_asset("favicon.svg"));
  add_api_routes();
  add_file_routes();
}

Server::Server(ServerOptions options, ServerBackend backend)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(backend))) {
  Impl& impl = *impl_;
  const ServerOptions& o = impl.options;
  if (!is_loopback_host(o.host) && o.token.empty()) {
    throw Error(ErrorKind::kUsage, "--host " + o.host +
                                       " makes the server reachable from other machines; it "
                                       "then needs --token TOKEN (or --token generate)");
  }
  const ServerLimits& limits = o.limits;
  const int workers = std::max(2, limits.worker_threads);
  impl.http.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  impl.http.set_payload_max_length(limits.max_body_bytes);
  impl.http.set_read_timeout(limits.socket_timeout_seconds, 0);
  impl.http.set_write_timeout(limits.socket_timeout_seconds, 0);
  impl.http.set_keep_alive_timeout(5);
  impl.http.set_keep_alive_max_count(1000);
  impl.http.set_tcp_nodelay(true);
  // cpp-httplib's default also sets SO_REUSEPORT, which lets a second server bind the same
  // port and share its connections; a port in use must be an error instead.
  impl.http.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  impl.add_routes();
  if (o.port == 0) {
    impl.port = impl.http.bind_to_any_port(o.host);
  } else {
    impl.port = impl.http.bind_to_port(o.host, o.port) ? o.port : -1;
  }
  if (impl.port <= 0) {
    throw Error(ErrorKind::kUsage, "cannot listen on " + o.host + ":" + std::to_string(o.port) +
                                       " (" + std::strerror(errno) +
                                       "); pick another --port, or --port 0 for any free one");
  }
}

Server::~Server() { stop(); }

int Server::port() const { return impl_->port; }

std::string Server::url() const {
  const std::string& host = impl_->options.host;
  const std::string shown = host == "0.0.0.0" || host == "::" ? "127.0.0.1" : host;
  const std::string bracketed = shown.find(':') != std::string::npos ? "[" + shown + "]" : shown;
  std::string url = "http://" + bracketed + ":" + std::to_string(impl_->port) + "/";
  if (!impl_->options.token.empty()) url += "?token=" + impl_->options.token;
  return url;
}

void Server::run() { impl_->http.listen_after_bind(); }

void Server::stop() {
  if (impl_) impl_->http.stop();
}

}  // namespace mmsearch
