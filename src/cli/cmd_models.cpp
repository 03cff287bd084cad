// `mmsearch models`: lists the bundles found on the model search path, valid or not.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/index.h"

namespace mmsearch::cli {
namespace {

std::string human_size(std::uintmax_t bytes) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
  return text;
}

}  // namespace

Command register_models(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("models", "List the installed model bundles");
  app->footer(
      "Examples:\n"
      "  mmsearch models\n"
      "  mmsearch models --json | jq '.[] | select(.valid) | .name'\n"
      "  mmsearch --models ./my-bundles models");
  struct Options {
    bool json = false;
    bool no_hash = false;
  };
  auto options = std::make_shared<Options>();
  app->add_flag("--json", options->json, "Machine-readable output");
  app->add_flag("--no-hash", options->no_hash,
                "Do not check file hashes (faster; a corrupt file is then not detected)");

  return {app, [&global, options]() {
            const auto search_path = model_search_path(global.models_dir);
            const auto listings =
                discover_bundles(search_path, !options->no_hash, default_verify_cache());
            std::string default_name;
            try {
              default_name = default_model_name(listings);
            } catch (const std::exception&) {
              // No unique default: nothing is marked.
            }
            nlohmann::json rows = nlohmann::json::array();
            for (const auto& listing : listings) {
              nlohmann::json row;
              row["name"] = listing.name;
              row["path"] = listing.dir.string();
              row["valid"] = listing.valid();
              row["default"] = listing.name == default_name;
              if (listing.bundle) {
                const Manifest& m = listing.bundle->manifest();
                row["family"] = to_string(m.family);
                row["vision_encoder"] = m.vision_encoder;
                row["image_size"] = m.image.size;
                row["embed_dim"] = m.dims.embed;
                row["hidden_dim"] = m.dims.hidden;
                row["query_tokens"] = m.dims.query_tokens;
                row["itm"] = m.itm;
                row["weights_dtype"] = m.weights_dtype;
                row["source"] = m.source_kind;
                row["size_bytes"] = listing.bundle->size_on_disk();
                row["description"] = m.description;
              } else if (listing.valid_translator) {
                row["family"] = "marian";
                row["kind"] = "translation";
                row["languages"] = listing.translator_languages;
                std::uintmax_t size = 0;
                std::error_code ec;
                for (const auto& entry : std::filesystem::directory_iterator(listing.dir, ec)) {
                  if (entry.is_regular_file(ec)) size += entry.file_size(ec);
                }
                row["size_bytes"] = size;
              } else {
                row["family"] = listing.family;
                row["reason"] = listing.invalid_reason;
              }
              rows.push_back(row);
            }
            if (options->json) {
              std::cout << json_text(rows) << "\n";
              return kExitOk;
            }
            if (rows.empty()) {
              std::cout << "No model bundles found";
              std::string searched;
              for (const auto& p : search_path) searched += " " + p.string();
              std::cout << (searched.empty() ? "." : " in:" + searched) << "\n"
                        << "Export one with: scripts/export_models.py export blip-base\n";
              return kExitOk;
            }
            std::printf("%-18s %-6s %-14s %5s %5s %5s %9s  %-7s %s\n", "NAME", "FAMILY", "VISION",
                        "SIZE", "EMBED", "DIM", "DISK", "STATUS", "PATH");
            for (const auto& row : rows) {
              const std::string name =
                  row["name"].get<std::string>() + (row["default"].get<bool>() ? " *" : "");
              if (row["valid"].get<bool>() && row.contains("languages")) {
                std::printf("%-18s %-6s %-14s %5s %5s %5s %9s  %-7s %s\n", name.c_str(), "marian",
                            ("translate " + row["languages"].get<std::string>()).c_str(), "-", "-",
                            "-", human_size(row["size_bytes"].get<std::uintmax_t>()).c_str(), "ok",
                            row["path"].get<std::string>().c_str());
              } else if (row["valid"].get<bool>()) {
                std::printf("%-18s %-6s %-14s %5d %5d %5d %9s  %-7s %s\n", name.c_str(),
                            row["family"].get<std::string>().c_str(),
                            row["vision_encoder"].get<std::string>().c_str(),
                            row["image_size"].get<int>(), row["embed_dim"].get<int>(),
                            row["hidden_dim"].get<int>(),
                            human_size(row["size_bytes"].get<std::uintmax_t>()).c_str(), "ok",
                            row["path"].get<std::string>().c_str());
              } else {
                std::printf("%-18s %-6s %-14s %5s %5s %5s %9s  %-7s %s\n      reason: %s\n",
                            name.c_str(), "?", "?", "-", "-", "-", "-", "INVALID",
                            row["path"].get<std::string>().c_str(),
                            row["reason"].get<std::string>().c_str());
              }
            }
            if (!default_name.empty()) std::printf("(* = default model)\n");
            return kExitOk;
          }};
}

}  // namespace mmsearch::cli
