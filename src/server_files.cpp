// Files and thumbnails of `mmsearch serve`, only for indexed paths inside the served roots, and
// the small concurrency helpers the server shares (server_impl.h).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "mmsearch/image.h"
#include "mmsearch/thumbnail.h"
#include "server_impl.h"

namespace fs = std::filesystem;

namespace mmsearch {

StorePool::Lease StorePool::acquire() {
  {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!idle_.empty()) {
      auto store = std::move(idle_.back());
      idle_.pop_back();
      return Lease(*this, std::move(store));
    }
  }
  std::error_code ec;
  if (!fs::exists(path_, ec)) {
    throw Error(ErrorKind::kIndex, "nothing has been indexed yet (no " + path_.string() +
                                       "); run: mmsearch index DIR");
  }
  return Lease(*this, std::make_unique<IndexStore>(path_, IndexStore::Mode::kReadOnly));
}

void StorePool::give_back(std::unique_ptr<IndexStore> store) {
  if (!store) return;
  std::lock_guard<std::mutex> guard(mutex_);
  idle_.push_back(std::move(store));
}

std::unique_ptr<JobSlots::Slot> JobSlots::acquire(std::chrono::duration<double> wait) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!freed_.wait_for(lock, wait, [this] { return free_ > 0; })) {
    throw HttpError(503,
                    "the server is busy; try again (mmsearch serve --jobs sets how many "
                    "queries run at once)");
  }
  --free_;
  return std::make_unique<Slot>(*this);
}

void JobSlots::release() {
  {
    std::lock_guard<std::mutex> guard(mutex_);
    ++free_;
  }
  freed_.notify_one();
}

bool RateLimiter::allow(const std::string& client, double& retry_after) {
  if (per_second_ <= 0) return true;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> guard(mutex_);
  if (buckets_.size() > 10000) {
    // Forget clients whose buckets are full again; they would start full anyway.
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      const double idle = std::chrono::duration<double>(now - it->second.last).count();
      it = it->second.tokens + idle * per_second_ >= burst_ ? buckets_.erase(it) : std::next(it);
    }
  }
  auto [it, inserted] = buckets_.try_emplace(client);
  Bucket& bucket = it->second;
  if (inserted) {
    bucket.tokens = burst_;
  } else {
    const double idle = std::chrono::duration<double>(now - bucket.last).count();
    bucket.tokens = std::min(burst_, bucket.tokens + idle * per_second_);
  }
  bucket.last = now;
  if (bucket.tokens < 1) {
    retry_after = (1 - bucket.tokens) / per_second_;
    return false;
  }
  bucket.tokens -= 1;
  return true;
}

std::optional<std::string> ThumbnailCache::find(const std::string& key) {
  std::lock_guard<std::mutex> guard(mutex_);
  const auto it = where_.find(key);
  if (it == where_.end()) {
    ++misses_;
    return std::nullopt;
  }
  ++hits_;
  entries_.splice(entries_.begin(), entries_, it->second);
  return it->second->second;
}

void ThumbnailCache::put(const std::string& key, std::string bytes) {
  std::lock_guard<std::mutex> guard(mutex_);
  if (bytes.size() > max_bytes_) return;
  if (const auto it = where_.find(key); it != where_.end()) {
    bytes_ -= it->second->second.size();
    entries_.erase(it->second);
    where_.erase(it);
  }
  bytes_ += bytes.size();
  entries_.emplace_front(key, std::move(bytes));
  where_[key] = entries_.begin();
  while (bytes_ > max_bytes_ && !entries_.empty()) {
    bytes_ -= entries_.back().second.size();
    where_.erase(entries_.back().first);
    entries_.pop_back();
  }
}

std::size_t ThumbnailCache::bytes() const {
  std::lock_guard<std::mutex> guard(mutex_);
  return bytes_;
}

fs::path Server::Impl::servable_file(const IndexStore& store, const std::string& requested) const {
  if (requested.empty()) throw HttpError(400, "\"path\" is missing: give an indexed file's path");
  if (requested.find('\0') != std::string::npos) throw HttpError(400, "\"path\" holds a NUL byte");
  if (!fs::path(requested).is_absolute()) {
    throw HttpError(400, "\"path\" must be absolute, as the query results give it");
  }
  // Lexically normalised first: "/photos/../etc/passwd" is "/etc/passwd", outside every root.
  const std::string path = normalize_index_path(requested);
  const auto root = root_of(path);
  if (!root) throw HttpError(403, path + " is not under a served folder");
  bool indexed = false;
  for (const auto& model : store.model_ids_in_scope(path)) {
    if (store.find_file(model, path)) {
      indexed = true;
      break;
    }
  }
  if (!indexed) throw HttpError(404, path + " is not an indexed file");
  // A link inside a root may point anywhere; only what really lies under a root's real path
  // is served.
  std::error_code ec;
  const fs::path real = fs::canonical(path, ec);
  if (ec) throw HttpError(404, path + ": " + ec.message());
  const std::string real_text = real.string();
  const bool inside = std::any_of(real_roots.begin(), real_roots.end(), [&](const fs::path& r) {
    const std::string text = r.string();
    return real_text.size() > text.size() && real_text.compare(0, text.size(), text) == 0 &&
           (text.back() == '/' || real_text[text.size()] == '/');
  });
  if (!inside) throw HttpError(403, path + " leads out of the served folders (a symbolic link)");
  if (!fs::is_regular_file(real, ec)) throw HttpError(404, path + " is not a regular file");
  return real;
}

void Server::Impl::add_file_routes() {
  http.Get("/api/thumbnail", [this](const httplib::Request& request, httplib::Response& response) {
    int size = 256;
    if (request.has_param("size")) {
      const std::string given = request.get_param_value("size");
      // A few sizes only, so that the cache holds one copy per photo and use.
      if (given == "128")
        size = 128;
      else if (given == "256")
        size = 256;
      else if (given == "512")
        size = 512;
      else
        throw HttpError(400, "\"size\" must be 128, 256 or 512");
    }
    fs::path file;
    {
      const auto store = stores.acquire();
      file = servable_file(*store, request.get_param_value("path"));
    }
    std::error_code ec;
    const auto size_bytes = fs::file_size(file, ec);
    const auto mtime = fs::last_write_time(file, ec).time_since_epoch().count();
    const std::string key = file.string() + "\n" + std::to_string(size) + "\n" +
                            std::to_string(size_bytes) + "\n" + std::to_string(mtime);
    std::ostringstream etag;
    etag << '"' << std::hex << std::hash<std::string>{}(key) << '"';
    response.set_header("ETag", etag.str());
    response.set_header("Cache-Control", "private, max-age=60");
    if (request.get_header_value("If-None-Match") == etag.str()) {
      response.status = 304;
      return;
    }
    std::optional<std::string> bytes = thumbnails.find(key);
    if (!bytes) {
      const auto slot =
          thumbnail_jobs.acquire(std::chrono::duration<double>(options.limits.job_wait_seconds));
      bytes = encode_jpeg(load_thumbnail(file, size, options.decode), 82);
      thumbnails.put(key, *bytes);
    }
    response.set_content(std::move(*bytes), "image/jpeg");
  });

  http.Get("/api/file", [this](const httplib::Request& request, httplib::Response& response) {
    fs::path file;
    {
      const auto store = stores.acquire();
      file = servable_file(*store, request.get_param_value("path"));
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) throw HttpError(404, file.string() + ": cannot be read");
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // The type from the content: the file was indexed because its bytes are an image.
    const char* mime =
        image_mime_type(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    response.set_header("Cache-Control", "private, max-age=60");
    response.set_content(std::move(bytes), mime);
  });
}

}  // namespace mmsearch
