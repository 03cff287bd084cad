// mmsearch: offline multimodal search over your photos with BLIP / BLIP-2. This umbrella header
// pulls in the whole public API; each header it includes documents its own shapes, dtypes and
// errors. docs/ARCHITECTURE.md says which file owns what.
//
// The whole flow, bundle -> encoder -> store -> index -> query:
//
//   #include <mmsearch/mmsearch.h>
//
//   mmsearch::configure_threads(2);  // once, by the program, before any model runs
//
//   // A model bundle from the search path (models/README.md is the contract), checked against
//   // its sha256 list once and then remembered in the per-user verify cache.
//   mmsearch::Bundle bundle =
//       mmsearch::find_bundle("dishes-tiny", mmsearch::model_search_path(""));
//   bundle.verify_files();
//   mmsearch::Encoder encoder(bundle);  // TorchScript modules load on first use
//
//   // The per-user store ($MMSEARCH_HOME/index.sqlite3); created or migrated on open.
//   mmsearch::IndexStore store(mmsearch::default_index_path());
//
//   // Embed a folder incrementally: only new or changed files run through the model.
//   const mmsearch::IndexSummary summary =
//       mmsearch::index_folder(encoder, store, "/photos/dishes", mmsearch::IndexOptions{});
//
//   // Ask it something.
//   mmsearch::QueryOptions options;
//   options.scope = "/photos/dishes";
//   options.k = 5;
//   const mmsearch::QueryResult result = mmsearch::run_query(
//       encoder, store, {{mmsearch::QueryTerm::Kind::kText, "lasagne with ragù", 1.0f}}, options);
//   for (const auto& hit : result.hits) std::printf("%.4f %s\n", hit.score, hit.path.c_str());
//
// Errors: every call throws mmsearch::Error (error.h) with an ErrorKind (usage, input, model,
// index, internal) and a message naming the file and the reason. The library never prints to
// stdout and never exits; it logs to spdlog's default logger.
#pragma once

#include "mmsearch/bundle.h"       // bundles: manifest, search path, locator, verify cache
#include "mmsearch/captions.h"     // captions.csv / .tsv / .jsonl / sidecar files
#include "mmsearch/encoder.h"      // the TorchScript image / text / multimodal encoders
#include "mmsearch/error.h"        // Error and ErrorKind
#include "mmsearch/eval.h"         // Recall@K, category precision, EvalReport
#include "mmsearch/hash.h"         // sha256 and the XXH64 content hash
#include "mmsearch/image.h"        // Pillow-equal decoding and resize
#include "mmsearch/index.h"        // IndexStore: the SQLite store
#include "mmsearch/indexer.h"      // index_folder: plan -> translate -> embed -> commit
#include "mmsearch/paths.h"        // the per-user data folder, path normalisation
#include "mmsearch/query.h"        // run_query: text, image and weighted searches
#include "mmsearch/render.h"       // heatmaps, montages, FreeType text, PNG
#include "mmsearch/rules.h"        // families, score rules, vector kinds, which vectors meet
#include "mmsearch/scope_model.h"  // which model answers for a folder; pruning stale models
#include "mmsearch/search.h"       // scoring, fusion, top-k over float matrices
#include "mmsearch/simmatrix.h"    // the study's similarity matrices
#include "mmsearch/text.h"         // pre_caption and the WordPiece tokenizer
#include "mmsearch/translate.h"    // MarianMT translation
#include "mmsearch/translation.h"  // cache-first translation of captions and queries
