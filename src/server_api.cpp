// The JSON endpoints of `mmsearch serve` (docs/API.md): health, models, folders, query and the
// similarity matrix.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <set>

#include "elapsed.h"
#include "mmsearch/api_request.h"
#include "mmsearch/query.h"
#include "mmsearch/simmatrix.h"
#include "server_impl.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mmsearch {
namespace {

// Percent-encodes every byte but the unreserved ones, so that any path (bytes on Linux) survives
// a URL and cpp-httplib's parameter decoding.
std::string url_encode(const std::string& text) {
  static const char* const kHex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

json hit_json(const QueryHit& hit, const fs::path& root) {
  const fs::path path(hit.path);
  json h = {{"rank", hit.rank},
            {"score", hit.score},
            {"path", hit.path},
            {"name", path.filename().string()},
            {"folder", path.parent_path().string()},
            {"relative", path.lexically_relative(root).string()},
            {"root", root.string()},
            {"caption", hit.caption},
            {"category", hit.category},
            {"thumbnail", "/api/thumbnail?path=" + url_encode(hit.path)},
            {"file", "/api/file?path=" + url_encode(hit.path)}};
  if (!hit.caption_en.empty() && hit.caption_en != hit.caption) h["caption_en"] = hit.caption_en;
  if (hit.itm_score) h["itm"] = *hit.itm_score;
  if (hit.itc_score) h["itc"] = *hit.itc_score;
  return h;
}

struct ScopedHit {
  QueryHit hit;
  const fs::path* root;
};

}  // namespace

void Server::Impl::add_api_routes() {
  http.Get("/api/health", [this](const httplib::Request&, httplib::Response& response) {
    json body = {{"status", "ok"},
                 {"version", MMSEARCH_VERSION},
                 {"uptime_s", seconds_since(started)},
                 {"requests", requests.load()},
                 {"queries", queries.load()},
                 {"client_errors", client_errors.load()},
                 {"server_errors", server_errors.load()},
                 {"thumbnail_cache",
                  {{"bytes", thumbnails.bytes()},
                   {"hits", thumbnails.hits()},
                   {"misses", thumbnails.misses()}}}};
    std::error_code ec;
    body["store"] = {{"path", stores.path().string()}, {"exists", fs::exists(stores.path(), ec)}};
    reply_json(response, body);
  });

  http.Get("/api/models", [this](const httplib::Request&, httplib::Response& response) {
    json models = json::array();
    std::set<std::string> indexed;
    try {
      const auto store = stores.acquire();
      for (const auto& root : roots) {
        for (const auto& id : store->model_ids_in_scope(root)) indexed.insert(id);
      }
    } catch (const Error&) {
      // Nothing indexed yet: every model is listed, none as indexed.
    }
    for (const auto& model : backend.models()) {
      models.push_back({{"name", model.name},
                        {"id", model.identity},
                        {"family", model.family},
                        {"itm", model.itm},
                        {"default", model.is_default},
                        {"indexed", indexed.count(model.identity) > 0}});
    }
    reply_json(response, {{"models", models}, {"translate", static_cast<bool>(backend.translate)}});
  });

  // The served roots, with their models' counts, categories and first-level folders.
  http.Get("/api/folders", [this](const httplib::Request&, httplib::Response& response) {
    const auto store = stores.acquire();
    json folders = json::array();
    for (const auto& root : roots) {
      const std::vector<ModelUsage> usages = store->models_in_scope(root);
      std::string key;
      for (const auto& usage : usages)
        key += usage.model_id + ":" + std::to_string(usage.file_count) + ";";
      {
        std::lock_guard<std::mutex> guard(folder_cache_mutex);
        const auto it = folder_cache.find(root.string());
        if (it != folder_cache.end() && it->second.key == key &&
            seconds_since(it->second.made) < 10) {
          folders.push_back(it->second.value);
          continue;
        }
      }
      json models = json::array();
      std::map<std::string, std::int64_t> categories, subfolders;
      for (const auto& usage : usages) {
        models.push_back({{"id", usage.model_id}, {"files", usage.file_count}});
      }
      if (!usages.empty()) {
        // Categories and sub-folders of the model with the most files under the root.
        for (const auto& file : store->list_files(usages.front().model_id, root)) {
          ++categories[file.category];
          const fs::path relative = fs::path(file.state.path).lexically_relative(root);
          if (std::distance(relative.begin(), relative.end()) > 1) {
            ++subfolders[(root / *relative.begin()).string()];
          }
        }
      }
      json entry = {
          {"path", root.string()}, {"name", root.filename().string()}, {"models", models}};
      entry["files"] = usages.empty() ? 0 : usages.front().file_count;
      entry["categories"] = json::array();
      for (const auto& [name, count] : categories) {
        entry["categories"].push_back({{"name", name}, {"files", count}});
      }
      entry["subfolders"] = json::array();
      for (const auto& [path, count] : subfolders) {
        entry["subfolders"].push_back(
            {{"path", path}, {"name", fs::path(path).filename().string()}, {"files", count}});
      }
      {
        std::lock_guard<std::mutex> guard(folder_cache_mutex);
        folder_cache[root.string()] = {key, std::chrono::steady_clock::now(), entry};
      }
      folders.push_back(std::move(entry));
    }
    reply_json(response, {{"folders", folders}});
  });

  auto answer_query = [this](const ApiQuery& query, const httplib::Request& request,
                             httplib::Response& response) {
    const auto received = std::chrono::steady_clock::now();
    ++queries;
    // Which folders: the one asked for (under a served root), else every root.
    std::vector<std::pair<fs::path, const fs::path*>> scopes;
    if (!query.folder.empty()) {
      const std::string folder = normalize_index_path(query.folder);
      const auto root = root_of(folder);
      if (!root) throw HttpError(400, "\"folder\": " + folder + " is not under a served folder");
      const auto it = std::find(roots.begin(), roots.end(), *root);
      scopes.emplace_back(folder, &*it);
    } else {
      for (const auto& root : roots) scopes.emplace_back(root, &root);
    }

    const auto store = stores.acquire();
    // The model of each folder; folders with nothing indexed are left out when several are
    // searched, and folders of different models can't be mixed in one ranking.
    std::vector<std::pair<std::shared_ptr<Encoder>, std::size_t>> models;  // encoder, scope
    std::string first_error;
    for (std::size_t i = 0; i < scopes.size(); ++i) {
      if (scopes.size() > 1 && store->model_ids_in_scope(scopes[i].first).empty()) continue;
      try {
        models.emplace_back(backend.encoder_for(*store, scopes[i].first, query.model), i);
      } catch (const Error& e) {
        if (scopes.size() == 1) throw;
        if (first_error.empty()) first_error = e.what();
      }
    }
    if (models.empty()) {
      throw HttpError(404, first_error.empty() ? "nothing is indexed under the served folders yet; "
                                                 "run: mmsearch index DIR"
                                               : first_error);
    }
    const std::string model_id = models.front().first->bundle().identity();
    for (const auto& [encoder, scope] : models) {
      if (encoder->bundle().identity() != model_id) {
        throw HttpError(400, "the served folders were indexed with different models (" + model_id +
                                 ", " + encoder->bundle().identity() +
                                 "); pick a \"folder\" or a \"model\"");
      }
    }
    Encoder& encoder = *models.front().first;

    // Terms: uploads decoded under the server's pixel limit, similar files checked for serving,
    // text translated when asked.
    std::vector<QueryTerm> terms;
    DecodeOptions upload_decode = options.decode;
    upload_decode.max_pixels = std::min(upload_decode.max_pixels, options.limits.max_upload_pixels);
    bool uses_model = query.rerank > 0;
    std::vector<std::string> texts;
    for (const auto& term : query.terms) {
      QueryTerm t;
      t.weight = term.weight;
      switch (term.kind) {
        case ApiQueryTerm::Kind::kText:
          t.kind = QueryTerm::Kind::kText;
          t.value = term.value;
          texts.push_back(term.value);
          uses_model = true;
          break;
        case ApiQueryTerm::Kind::kUpload:
        case ApiQueryTerm::Kind::kInline: {
          std::string bytes;
          std::string name = "the uploaded image";
          if (term.kind == ApiQueryTerm::Kind::kUpload) {
            if (!request.has_file(term.value)) {
              throw HttpError(
                  400, "\"upload\": the request has no multipart field \"" + term.value + "\"");
            }
            const auto file = request.get_file_value(term.value);
            bytes = file.content;
            if (!file.filename.empty()) name = file.filename;
          } else {
            bytes = term.value;
          }
          t.kind = QueryTerm::Kind::kImage;
          t.value = name;
          t.pixels = std::make_shared<RgbImage>(
              decode_image_from_memory(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                       bytes.size(), name, upload_decode));
          uses_model = true;
          break;
        }
        case ApiQueryTerm::Kind::kSimilar:
          t.kind = QueryTerm::Kind::kIndexed;
          t.value = servable_file(*store, term.value).string();
          break;
      }
      terms.push_back(std::move(t));
    }
    std::map<std::string, std::string> translated;
    if (!query.translate.empty() && !texts.empty()) {
      if (!backend.translate)
        throw HttpError(400, "\"translate\": no translation model is installed");
      const auto english = backend.translate(*store, query.translate, texts);
      for (std::size_t i = 0, j = 0; i < terms.size(); ++i) {
        if (terms[i].kind != QueryTerm::Kind::kText) continue;
        if (!english[j].empty()) {
          translated[english[j]] = terms[i].value;
          terms[i].value = english[j];
        }
        ++j;
      }
    }

    QueryOptions base;
    base.against = query.against;
    base.threshold = query.threshold.value_or(-std::numeric_limits<float>::infinity());
    base.rerank = query.rerank;
    base.exact = query.exact;
    base.decode = options.decode;
    const std::int64_t wanted = query.offset + query.k;
    const std::set<std::string> categories(query.categories.begin(), query.categories.end());

    const auto waited_from = std::chrono::steady_clock::now();
    const auto slot = jobs.acquire(std::chrono::duration<double>(options.limits.job_wait_seconds));
    const double queue_ms = ms_since(waited_from);
    QueryPhases phases;
    std::int64_t searched = 0;
    bool proven_exact = true, approximate = false, exhausted = false;
    std::vector<ScopedHit> hits;
    // A category filter is applied to a ranking that is widened (x4 each round) until it holds
    // enough hits of those categories or the whole folder was ranked.
    // One more than asked for: whether it exists is the answer's "more".
    std::int64_t ask =
        categories.empty() ? wanted + 1 : std::max<std::int64_t>((wanted + 1) * 4, 64);
    for (;;) {
      hits.clear();
      searched = 0;
      bool all_exhausted = true;
      for (const auto& [model, scope_index] : models) {
        QueryOptions one = base;
        one.scope = scopes[scope_index].first;
        one.k = ask;
        QueryResult result;
        if (uses_model) {
          std::lock_guard<std::mutex> guard(lock_for(*model));
          result = run_query(*model, *store, terms, one);
        } else {
          result = run_query(*model, *store, terms, one);
        }
        const QueryPhases& p = result.phases;
        phases.load_ms += p.load_ms;
        phases.tokenize_ms += p.tokenize_ms;
        phases.forward_ms += p.forward_ms;
        phases.search_ms += p.search_ms;
        phases.rerank_ms += p.rerank_ms;
        searched += result.searched;
        proven_exact = proven_exact && result.proven_exact;
        approximate = approximate || result.approximate;
        if (static_cast<std::int64_t>(result.hits.size()) >= ask) all_exhausted = false;
        for (auto& hit : result.hits) {
          if (!categories.empty() && !categories.count(hit.category)) continue;
          hits.push_back({std::move(hit), scopes[scope_index].second});
        }
      }
      exhausted = all_exhausted;
      if (categories.empty() || exhausted || static_cast<std::int64_t>(hits.size()) > wanted ||
          ask >= options.limits.max_k * 64) {
        break;
      }
      ask *= 4;
    }
    std::stable_sort(hits.begin(), hits.end(), [](const ScopedHit& a, const ScopedHit& b) {
      return a.hit.score != b.hit.score ? a.hit.score > b.hit.score : a.hit.path < b.hit.path;
    });

    json results = json::array();
    for (std::int64_t i = query.offset; i < std::min<std::int64_t>(wanted, hits.size()); ++i) {
      hits[i].hit.rank = static_cast<int>(i) + 1;
      results.push_back(hit_json(hits[i].hit, *hits[i].root));
    }
    json body;
    body["model"] = encoder.manifest().name;
    body["model_id"] = model_id;
    body["against"] = to_string(query.against);
    body["searched"] = searched;
    body["offset"] = query.offset;
    body["k"] = query.k;
    body["more"] = static_cast<std::int64_t>(hits.size()) > wanted;
    body["proven_exact"] = proven_exact;
    body["approximate"] = approximate;
    body["terms"] = json::array();
    for (const auto& term : terms) {
      json t = {{"weight", term.weight}};
      if (term.kind == QueryTerm::Kind::kText) {
        t["text"] = term.value;
        const auto it = translated.find(term.value);
        if (it != translated.end()) t["original"] = it->second;
      } else if (term.kind == QueryTerm::Kind::kIndexed) {
        t["similar"] = term.value;
      } else {
        t["image"] = term.value;
      }
      body["terms"].push_back(std::move(t));
    }
    body["results"] = std::move(results);
    body["phases_ms"] = {{"queue", queue_ms},
                         {"load", phases.load_ms},
                         {"tokenize", phases.tokenize_ms},
                         {"forward", phases.forward_ms},
                         {"search", phases.search_ms},
                         {"rerank", phases.rerank_ms},
                         {"total", ms_since(received)}};
    reply_json(response, body);
  };

  http.Post(
      "/api/query", [answer_query](const httplib::Request& request, httplib::Response& response) {
        ApiQuery query;
        if (request.is_multipart_form_data()) {
          if (!request.has_file("query")) {
            throw HttpError(400, "a multipart query needs a field \"query\" holding the JSON body");
          }
          query = parse_api_query(request.get_file_value("query").content);
        } else {
          query = parse_api_query(request.body);
        }
        answer_query(query, request, response);
      });
  // GET /api/query?text=pizza&k=5: the one-text query, for links and quick curl use.
  http.Get(
      "/api/query", [answer_query](const httplib::Request& request, httplib::Response& response) {
        json body = json::object();
        for (const auto& [key, value] : request.params) {
          if (key == "token") continue;
          if (key == "k" || key == "offset" || key == "rerank") {
            try {
              std::size_t used = 0;
              const long long number = std::stoll(value, &used);
              if (used != value.size()) throw std::invalid_argument(value);
              body[key] = number;
            } catch (const std::exception&) {
              throw HttpError(400, "\"" + key + "\" must be an integer");
            }
          } else if (key == "exact") {
            body[key] = value == "1" || value == "true";
          } else {
            body[key] = value;
          }
        }
        answer_query(parse_api_query(body.dump(-1, ' ', false, json::error_handler_t::replace)),
                     request, response);
      });

  // A similarity matrix of a small folder, for the page's matrix view.
  http.Get("/api/simmatrix", [this](const httplib::Request& request, httplib::Response& response) {
    const std::string kind_name =
        request.has_param("kind") ? request.get_param_value("kind") : "image-image";
    SimilarityKind kind;
    try {
      kind = similarity_kind_from_string(kind_name);
    } catch (const Error& e) {
      throw HttpError(400, std::string("\"kind\": ") + e.what());
    }
    const std::string folder = normalize_index_path(
        request.has_param("folder") ? request.get_param_value("folder") : roots.front().string());
    if (!root_of(folder))
      throw HttpError(400, "\"folder\": " + folder + " is not under a served folder");
    const std::string model = request.has_param("model") ? request.get_param_value("model") : "";
    const auto store = stores.acquire();
    const std::shared_ptr<Encoder> encoder = backend.encoder_for(*store, folder, model);
    const std::string model_id = encoder->bundle().identity();
    std::int64_t files = 0;
    for (const auto& usage : store->models_in_scope(folder)) {
      if (usage.model_id == model_id) files = usage.file_count;
    }
    if (files > options.limits.max_matrix_items) {
      throw HttpError(400, folder + " holds " + std::to_string(files) +
                               " files; the matrix view takes at most " +
                               std::to_string(options.limits.max_matrix_items) +
                               " (pick a sub-folder, or use mmsearch simmatrix --sample)");
    }
    const auto slot = jobs.acquire(std::chrono::duration<double>(options.limits.job_wait_seconds));
    SimilarityMatrix matrix;
    try {
      matrix = build_similarity_matrix(*store, encoder->manifest(), model_id, folder, kind);
    } catch (const MissingCaptions& e) {
      throw HttpError(400, e.what());
    }
    json body = {{"model", encoder->manifest().name},
                 {"model_id", model_id},
                 {"kind", to_string(kind)},
                 {"folder", folder},
                 {"rows", matrix.row_labels},
                 {"row_categories", matrix.row_categories},
                 {"columns", matrix.col_labels},
                 {"column_categories", matrix.col_categories},
                 {"scores", matrix.scores}};
    reply_json(response, body);
  });
}

}  // namespace mmsearch
