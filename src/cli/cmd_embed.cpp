// `mmsearch embed`: the embeddings LAVIS's extract_features returns, for given images and
// texts, as JSON or as one .npy per output.
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "json_output.h"
#include "mmsearch/error.h"
#include "mmsearch/npy.h"

namespace fs = std::filesystem;

namespace mmsearch::cli {
namespace {

struct NamedOutput {
  std::string name;
  torch::Tensor tensor;
};

nlohmann::json tensor_json(const torch::Tensor& tensor) {
  const torch::Tensor flat = tensor.contiguous().to(torch::kFloat32).reshape({-1});
  nlohmann::json j;
  j["shape"] = tensor.sizes().vec();
  j["data"] = std::vector<float>(flat.data_ptr<float>(), flat.data_ptr<float>() + flat.numel());
  return j;
}

// Repeats rows so that row p = i * repeat_each + j pairs item i with j (LAVIS pair order).
torch::Tensor repeat_rows_each(const torch::Tensor& t, std::int64_t times) {
  return t.repeat_interleave(times, 0);
}
torch::Tensor tile_rows(const torch::Tensor& t, std::int64_t times) {
  std::vector<std::int64_t> repeats(t.dim(), 1);
  repeats[0] = times;
  return t.repeat(repeats);
}

}  // namespace

Command register_embed(CLI::App& root, GlobalOptions& global) {
  auto* app = root.add_subcommand("embed", "Print image / text / multimodal embeddings");
  app->footer(
      "Multimodal and ITM rows pair image i with text j at row i*T + j (T = number of texts).\n"
      "Examples:\n"
      "  mmsearch embed --model blip-base --image pizza.jpg --text \"a pizza\"\n"
      "  mmsearch embed --model blip2-vitL --image a.jpg --image b.png --out feats/\n"
      "  mmsearch embed --text \"lasagne al ragù\" --mode text --json\n"
      "  mmsearch embed --from-file queries.txt --out feats/");
  struct Options {
    std::string model;
    std::vector<std::string> images;
    std::vector<std::string> texts;
    std::string mode;
    std::string out;
    bool no_exif = false;
    int text_length = 0;
    std::int64_t max_pixels = DecodeOptions{}.max_pixels;
    std::string from_file;
  };
  auto options = std::make_shared<Options>();
  app->add_option("--model,-m", options->model, "Model bundle (default: the default model)");
  app->add_option("--image,-i", options->images, "Image file (repeatable)");
  app->add_option("--text,-t", options->texts, "Text (repeatable)");
  app->add_option("--from-file", options->from_file,
                  "Also embed every line of this file as a text ('-': standard input)");
  app->add_option("--mode", options->mode,
                  "Only this path: image, text or multimodal (default: all the inputs allow)")
      ->check(CLI::IsMember({"image", "text", "multimodal"}));
  app->add_option("--out,-o", options->out, "Write one .npy per output into this folder");
  app->add_flag("--no-exif-rotate", options->no_exif,
                "Ignore EXIF orientation (strict LAVIS behaviour)");
  app->add_option("--max-pixels", options->max_pixels, "Refuse larger images (bomb guard)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  app->add_option("--text-length", options->text_length,
                  "Truncate and pad texts to N tokens, as LAVIS's retrieval evaluation does "
                  "(35); default 0: no truncation, padded to the longest (extract_features)")
      ->check(CLI::Range(0, 512));

  return {app, [&global, options]() {
            append_texts_from_file(options->from_file, options->texts);
            const bool want_image =
                options->mode.empty() ? !options->images.empty() : options->mode == "image";
            const bool want_text =
                options->mode.empty() ? !options->texts.empty() : options->mode == "text";
            const bool want_multimodal = options->mode.empty()
                                             ? !options->images.empty() && !options->texts.empty()
                                             : options->mode == "multimodal";
            if (want_image && options->images.empty()) {
              throw Error(ErrorKind::kUsage, "--mode image needs at least one --image");
            }
            if (want_text && options->texts.empty()) {
              throw Error(ErrorKind::kUsage, "--mode text needs at least one --text");
            }
            if (want_multimodal && (options->images.empty() || options->texts.empty())) {
              throw Error(ErrorKind::kUsage, "multimodal needs at least one --image and --text");
            }
            if (options->images.empty() && options->texts.empty()) {
              throw Error(ErrorKind::kUsage, "give at least one --image or --text");
            }

            auto encoder = open_encoder(global, options->model);
            const Manifest& manifest = encoder->manifest();
            std::vector<NamedOutput> outputs;

            torch::Tensor vision_tokens;
            if (want_image || want_multimodal) {
              DecodeOptions decode;
              decode.apply_exif_orientation = !options->no_exif;
              decode.max_pixels = options->max_pixels;
              std::vector<RgbImage> images;
              for (const auto& path : options->images) images.push_back(decode_image(path, decode));
              const ImageOutputs image = encoder->encode_image(encoder->preprocess(images));
              vision_tokens = image.vision_tokens;
              if (want_image) {
                outputs.push_back({"image_embeds", image.image_embeds});
                outputs.push_back({"image_embeds_proj", image.image_embeds_proj});
              }
            }
            // LAVIS extract_features tokenises with padding=True and no truncation; its retrieval
            // evaluation pads and truncates to 35 (--text-length 35).
            TextBatch texts;
            if (want_text || want_multimodal) {
              texts = options->text_length > 0
                          ? encoder->tokenize(options->texts, options->text_length, true)
                          : encoder->tokenize(options->texts, 0);
            }
            if (want_text) {
              const TextOutputs text = encoder->encode_text(texts);
              outputs.push_back({"text_embeds", text.text_embeds});
              outputs.push_back({"text_embeds_proj", text.text_embeds_proj});
            }
            if (want_multimodal) {
              const std::int64_t n = vision_tokens.size(0);
              const std::int64_t t = texts.input_ids.size(0);
              TextBatch pairs;
              pairs.input_ids = tile_rows(texts.input_ids, n);
              pairs.attention_mask = tile_rows(texts.attention_mask, n);
              const torch::Tensor pair_vision = repeat_rows_each(vision_tokens, t);
              const MultimodalOutputs mm = encoder->encode_multimodal(pair_vision, pairs);
              outputs.push_back({"multimodal_embeds", mm.multimodal_embeds});
              if (manifest.itm) {
                // The ITM head reads texts truncated to the model's ITM limit (LAVIS: BLIP
                // retrieval 35, BLIP-2 32); reuse the pass above when nothing is cut.
                torch::Tensor itm = mm.itm_logits;
                if (texts.input_ids.size(1) > manifest.text.itm_max_tokens) {
                  const TextBatch cut =
                      encoder->tokenize(options->texts, manifest.text.itm_max_tokens);
                  TextBatch cut_pairs;
                  cut_pairs.input_ids = tile_rows(cut.input_ids, n);
                  cut_pairs.attention_mask = tile_rows(cut.attention_mask, n);
                  itm = encoder->encode_multimodal(pair_vision, cut_pairs).itm_logits;
                }
                outputs.push_back({"itm_logits", itm});
              }
            }

            if (!options->out.empty()) {
              const fs::path dir(options->out);
              std::error_code ec;
              fs::create_directories(dir, ec);
              if (ec) throw Error(ErrorKind::kInput, dir.string() + ": " + ec.message());
              for (const auto& output : outputs) {
                const torch::Tensor t = output.tensor.contiguous().to(torch::kFloat32);
                write_npy(dir / (output.name + ".npy"), t.sizes().vec(), t.data_ptr<float>());
                spdlog::info("wrote {} {}", (dir / (output.name + ".npy")).string(),
                             nlohmann::json(t.sizes().vec()).dump());
              }
              return kExitOk;
            }
            nlohmann::json result;
            result["model"] = manifest.name;
            result["images"] = options->images;
            result["texts"] = options->texts;
            result["normalised_texts"] = texts.normalised;
            result["pair_order"] = "row p = i * num_texts + j (image i, text j)";
            for (const auto& output : outputs) result[output.name] = tensor_json(output.tensor);
            std::cout << json_text(result, -1) << "\n";
            return kExitOk;
          }};
}

}  // namespace mmsearch::cli
