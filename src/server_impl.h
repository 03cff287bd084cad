// The parts of `mmsearch serve` shared by its files: server.cpp (sockets, security, routing),
// server_api.cpp (the JSON endpoints) and server_files.cpp (files and thumbnails).
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mmsearch/error.h"
#include "mmsearch/server.h"

namespace mmsearch {

// An error answered with an HTTP status and {"error": message}.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message)
      : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// Read-only connections to the store, one per request at a time (an IndexStore is not
// thread-safe). Each request's reads run in fresh snapshots, so a connection kept here sees
// every commit made since it was opened.
class StorePool {
 public:
  explicit StorePool(std::filesystem::path path) : path_(std::move(path)) {}
  class Lease {
   public:
    Lease(StorePool& pool, std::unique_ptr<IndexStore> store)
        : pool_(pool), store_(std::move(store)) {}
    ~Lease() { pool_.give_back(std::move(store_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    const IndexStore& operator*() const { return *store_; }
    const IndexStore* operator->() const { return store_.get(); }

   private:
    StorePool& pool_;
    std::unique_ptr<IndexStore> store_;
  };
  // Error(kIndex) when nothing has been indexed yet (the store does not exist).
  Lease acquire();
  const std::filesystem::path& path() const { return path_; }

 private:
  void give_back(std::unique_ptr<IndexStore> store);
  std::filesystem::path path_;
  std::mutex mutex_;
  std::vector<std::unique_ptr<IndexStore>> idle_;
};

// A counting semaphore whose waits time out: queries beyond the limit queue, and a request that
// waited too long gets 503 rather than holding its connection forever.
class JobSlots {
 public:
  explicit JobSlots(int slots) : free_(slots) {}
  class Slot {
   public:
    explicit Slot(JobSlots& owner) : owner_(owner) {}
    ~Slot() { owner_.release(); }
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;

   private:
    JobSlots& owner_;
  };
  // Throws HttpError(503) after `wait`.
  std::unique_ptr<Slot> acquire(std::chrono::duration<double> wait);

 private:
  void release();
  std::mutex mutex_;
  std::condition_variable freed_;
  int free_;
};

// Requests per client address, as token buckets.
class RateLimiter {
 public:
  RateLimiter(double per_second, double burst) : per_second_(per_second), burst_(burst) {}
  // Whether the client may make a request now; when not, seconds until it may.
  bool allow(const std::string& client, double& retry_after);

 private:
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last;
  };
  double per_second_, burst_;
  std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
};

// Encoded thumbnails by (path, size, file identity), least recently used out first.
class ThumbnailCache {
 public:
  explicit ThumbnailCache(std::size_t max_bytes) : max_bytes_(max_bytes) {}
  std::optional<std::string> find(const std::string& key);
  void put(const std::string& key, std::string bytes);
  std::size_t bytes() const;
  std::int64_t hits() const { return hits_; }
  std::int64_t misses() const { return misses_; }

 private:
  std::size_t max_bytes_;
  mutable std::mutex mutex_;
  std::list<std::pair<std::string, std::string>> entries_;  // most recent first
  std::unordered_map<std::string, std::list<std::pair<std::string, std::string>>::iterator> where_;
  std::size_t bytes_ = 0;
  std::atomic<std::int64_t> hits_{0}, misses_{0};
};

struct Server::Impl {
  Impl(ServerOptions options, ServerBackend backend);

  ServerOptions options;
  ServerBackend backend;
  httplib::Server http;
  int port = 0;
  std::vector<std::filesystem::path> roots;       // normalize_index_path form
  std::vector<std::filesystem::path> real_roots;  // the same, symlinks resolved
  StorePool stores;
  JobSlots jobs;
  JobSlots thumbnail_jobs;
  RateLimiter rate;
  ThumbnailCache thumbnails;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::atomic<std::int64_t> requests{0}, queries{0}, client_errors{0}, server_errors{0};
  // One model pass at a time per encoder: libtorch's pool already uses every core, and the
  // modules load lazily.
  std::mutex encoder_locks_mutex;
  std::map<const Encoder*, std::unique_ptr<std::mutex>> encoder_locks;
  std::mutex& lock_for(const Encoder& encoder);
  // /api/folders answers from here while the store's counts have not changed (10 s at most).
  struct FolderSummary {
    std::string key;
    std::chrono::steady_clock::time_point made;
    nlohmann::json value;
  };
  std::mutex folder_cache_mutex;
  std::map<std::string, FolderSummary> folder_cache;

  void add_routes();       // server.cpp
  void add_api_routes();   // server_api.cpp
  void add_file_routes();  // server_files.cpp
  // The served root holding `path` (normalize_index_path form), or nullopt.
  std::optional<std::filesystem::path> root_of(const std::string& path) const;
  // An indexed file's path, checked for serving: under a served root, held by the store for
  // some model, and not a link out of the roots. Throws HttpError 400/403/404.
  std::filesystem::path servable_file(const IndexStore& store, const std::string& requested) const;
};

// The JSON error body, and the status an mmsearch::Error maps to (docs/API.md).
void reply_error(httplib::Response& response, int status, const std::string& message);
int status_for(const Error& error);
// JSON reply with no-store caching (answers change as the index does).
void reply_json(httplib::Response& response, const nlohmann::json& body, int status = 200);

}  // namespace mmsearch
