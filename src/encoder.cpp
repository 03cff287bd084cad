#include "mmsearch/encoder.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <malloc.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "bf16_layer_norm.h"
#include "mmsearch/bundle_weights.h"
#include "mmsearch/error.h"

namespace fs = std::filesystem;

namespace mmsearch {
namespace {

// OpenBLAS exports these from the libblas.so.3 that libtorch links; looked up at run time so
// that a reference BLAS (no such symbols) still works, only slower.
using SetBlasThreads = void (*)(int);
using GetBlasThreads = int (*)();

SetBlasThreads openblas_setter() {
  return reinterpret_cast<SetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
}
GetBlasThreads openblas_getter() {
  return reinterpret_cast<GetBlasThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
}

torch::Tensor to_int64_tensor(const std::vector<std::int64_t>& values, std::int64_t rows,
                              std::int64_t cols) {
  return torch::from_blob(const_cast<std::int64_t*>(values.data()), {rows, cols}, torch::kInt64)
      .clone();
}

}  // namespace

InferenceDtype parse_inference_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return InferenceDtype::kFloat32;
  if (name == "bf16" || name == "bfloat16") return InferenceDtype::kBFloat16;
  if (name == "auto") return default_inference_dtype();
  throw Error(ErrorKind::kUsage,
              "unknown inference dtype '" + name + "' (expected auto, fp32 or bf16)");
}

const char* inference_dtype_name(InferenceDtype dtype) {
  return dtype == InferenceDtype::kBFloat16 ? "bf16" : "fp32";
}

bool cpu_has_native_bf16() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
#else
  return false;
#endif
}

InferenceDtype default_inference_dtype() {
  return cpu_has_native_bf16() ? InferenceDtype::kBFloat16 : InferenceDtype::kFloat32;
}

void configure_threads(int threads, InferenceDtype dtype) {
  threads = std::max(1, threads);
  // Matrix products dominate BLIP inference. Giving both pools every core makes them spin-wait
  // on the same cores, so the pool that runs the products of this dtype gets them all (see
  // encoder.h for the measurements).
  auto set_blas = openblas_setter();
  if (set_blas && dtype == InferenceDtype::kFloat32) {
    set_blas(threads);
    at::set_num_threads(1);
  } else {
    if (set_blas) set_blas(1);
    at::set_num_threads(threads);
  }
  // libtorch allows this once per process, before any parallel work; the split above may be
  // changed again (a benchmark trying dtypes).
  static std::once_flag interop_once;
  std::call_once(interop_once, [] { at::set_num_interop_threads(1); });
}

void configure_memory_allocator() {
#if defined(__GLIBC__)
  // 32 MiB is the largest threshold glibc accepts on 64-bit. The largest weights (embeddings)
  // stay mapped, so their fp32 originals, freed by a bf16 conversion, go back to the system.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

ThreadConfig current_thread_config() {
  ThreadConfig config;
  config.torch_threads = at::get_num_threads();
  auto get_blas = openblas_getter();
  config.blas_threads = get_blas ? get_blas() : -1;
  return config;
}

Encoder::Encoder(Bundle bundle, InferenceDtype dtype, bool freeze)
    : bundle_(std::move(bundle)), dtype_(dtype), freeze_(freeze) {}

const WordPieceTokenizer& Encoder::tokenizer() const {
  std::call_once(tokenizer_once_, [this] {
    const TextSpec& spec = manifest().text;
    TokenizerOptions options;
    options.lowercase = spec.lowercase;
    options.cls_id = spec.cls_token_id;
    options.sep_id = spec.sep_token_id;
    options.pad_id = spec.pad_token_id;
    // The tokenizer takes the whole map: names already in vocab.txt at that id are only marked
    // special, the others ([DEC], [ENC]) become added tokens with their ids.
    options.added_tokens.insert(spec.special_tokens.begin(), spec.special_tokens.end());
    tokenizer_ = std::make_unique<WordPieceTokenizer>(bundle_.file(spec.vocab_file), options);
  });
  return *tokenizer_;
}

torch::Tensor Encoder::preprocess_one(const RgbImage& image) const {
  const ImageSpec& spec = manifest().image;
  const RgbImage resized = resize_bicubic_pil(image, spec.size, spec.size);
  std::vector<float> chw = normalize_to_chw(resized, spec.mean, spec.std);
  return torch::from_blob(chw.data(), {3, spec.size, spec.size}, torch::kFloat32).clone();
}

torch::Tensor Encoder::preprocess(const std::vector<RgbImage>& images) const {
  std::vector<torch::Tensor> tensors;
  tensors.reserve(images.size());
  for (const auto& image : images) tensors.push_back(preprocess_one(image));
  return torch::stack(tensors);
}

TextBatch Encoder::tokenize(const std::vector<std::string>& texts, int max_tokens,
                            bool pad_to_max) const {
  const TextSpec& spec = manifest().text;
  TextBatch batch;
  batch.normalised.reserve(texts.size());
  for (const auto& text : texts) {
    batch.normalised.push_back(
        spec.normalise == "lavis-pre-caption" ? pre_caption(text, spec.max_words) : text);
  }
  const BatchEncoding encoded = tokenizer().encode_batch(batch.normalised, max_tokens, pad_to_max);
  batch.input_ids = to_int64_tensor(encoded.ids, encoded.count, encoded.length);
  batch.attention_mask = to_int64_tensor(encoded.mask, encoded.count, encoded.length);
  return batch;
}

torch::jit::Module& Encoder::module(const std::string& file,
                                    std::optional<torch::jit::Module>& slot) {
  if (slot) return *slot;
  const auto path = bundle_.file(file);
  try {
    slot = torch::jit::load(path.string(), torch::kCPU);
  } catch (const c10::Error& e) {
    throw Error(ErrorKind::kModel,
                path.string() + ": cannot load TorchScript module: " + e.what_without_backtrace());
  }
  if (!bundle_.manifest().weights_file.empty()) put_weights(*slot, file);
  slot->eval();
  if (dtype_ == InferenceDtype::kBFloat16) slot->to(torch::kBFloat16);
  if (freeze_) {
    // Weights become constants of the graph, so the interpreter no longer fetches attributes
    // per call and constant-folds around them: measured 6 % (fp32) and 17 % (bf16) more images
    // per second for blip-base. optimize_for_inference was slower (its MKLDNN layout
    // conversions around every linear), and Debian's libtorch has no oneDNN Graph fuser.
    try {
      slot = torch::jit::freeze(*slot);
      // Frozen, every LayerNorm is inlined into forward, where the fused bf16 one replaces
      // libtorch's slow bf16 kernel (bf16_layer_norm.h).
      if (dtype_ == InferenceDtype::kBFloat16) {
        use_fused_layer_norm(slot->get_method("forward").graph());
      }
    } catch (const c10::Error& e) {
      throw Error(ErrorKind::kModel, path.string() + ": cannot freeze TorchScript module: " +
                                         e.what_without_backtrace());
    }
  }
  return *slot;
}

std::vector<torch::IValue> Encoder::run(torch::jit::Module& module,
                                        std::vector<torch::IValue> inputs,
                                        std::size_t expected_outputs, const std::string& file) {
  torch::IValue output;
  try {
    output = module.forward(std::move(inputs));
  } catch (const c10::Error& e) {
    throw Error(ErrorKind::kModel,
                bundle_.file(file).string() + ": forward failed: " + e.what_without_backtrace());
  }
  if (!output.isTuple()) {
    throw Error(ErrorKind::kModel, bundle_.file(file).string() +
                                       ": returned a non-tuple, violating the bundle contract");
  }
  auto elements = output.toTuple()->elements();
  if (elements.size() != expected_outputs) {
    throw Error(ErrorKind::kModel, bundle_.file(file).string() + ": returned " +
                                       std::to_string(elements.size()) + " outputs, expected " +
                                       std::to_string(expected_outputs));
  }
  return std::vector<torch::IValue>(elements.begin(), elements.end());
}

void Encoder::put_weights(torch::jit::Module& module, const std::string& file) {
  // Mapped per module load: fp32 weights stay views of the mapping (no copy), and once a bf16
  // module holds its converted copies, the mapping goes and its pages leave the process.
  const auto weights = WeightFile::open(bundle_.file(bundle_.manifest().weights_file));
  const std::string role = fs::path(file).stem().string();
  for (const std::string& name : weights->module_weights(role)) {
    torch::Tensor value = weights->tensor(name);
    // bf16 inference converts each weight on its own, so the fp32 copy of a whole module is
    // never resident at once.
    if (dtype_ == InferenceDtype::kBFloat16 && value.is_floating_point()) {
      value = value.to(torch::kBFloat16);
      weights->release(name);
    }
    // The exporter's wrappers hold the model as path.model (models/README.md).
    const std::string dotted = "path.model." + name;
    torch::jit::Object owner = module;
    std::size_t start = 0;
    try {
      for (std::size_t dot; (dot = dotted.find('.', start)) != std::string::npos; start = dot + 1) {
        owner = torch::jit::Object(owner.attr(dotted.substr(start, dot - start)).toObject());
      }
      owner.setattr(dotted.substr(start), value);
    } catch (const c10::Error& e) {
      throw Error(ErrorKind::kModel, bundle_.file(file).string() + ": has no weight " + name +
                                         " that " + weights->path().filename().string() +
                                         " lists for it: " + e.what_without_backtrace());
    }
  }
}

void Encoder::load_modules(bool image, bool text, bool multimodal) {
  if (image) module("image.pt", image_module_);
  if (text) module("text.pt", text_module_);
  if (multimodal) module("multimodal.pt", multimodal_module_);
}

void Encoder::check_output(const torch::IValue& value, const char* name,
                           std::vector<std::int64_t> expected, const std::string& file) const {
  // A module of another model (possible with --no-verify, or a hand-edited bundle) must stop
  // here with a model error, not deep in the search with a shape mismatch.
  auto shape = [](const std::vector<std::int64_t>& sizes) {
    std::string text = "[";
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      text += (i ? ", " : "") + (sizes[i] < 0 ? std::string("*") : std::to_string(sizes[i]));
    }
    return text + "]";
  };
  const std::string where = bundle_.file(file).string() + ": output " + name;
  if (!value.isTensor()) {
    throw Error(ErrorKind::kModel, where + " is not a tensor, violating the bundle contract");
  }
  const torch::Tensor tensor = value.toTensor();
  const std::vector<std::int64_t> sizes = tensor.sizes().vec();
  bool matches = sizes.size() == expected.size();
  for (std::size_t i = 0; matches && i < sizes.size(); ++i) {
    matches = expected[i] < 0 || sizes[i] == expected[i];
  }
  if (!matches) {
    throw Error(ErrorKind::kModel,
                where + " is " + shape(sizes) + " where the manifest's dims give " +
                    shape(expected) + ": the module does not belong to " + bundle_.dir().string() +
                    " (re-export the bundle; without --no-verify its checksums catch this)");
  }
}

ImageOutputs Encoder::encode_image(const torch::Tensor& pixels) {
  c10::InferenceMode guard;
  auto outputs =
      run(module("image.pt", image_module_), {pixels.to(torch::kFloat32)}, 3, "image.pt");
  const Dims& dims = manifest().dims;
  const std::int64_t batch = pixels.size(0);
  check_output(outputs[0], "vision_tokens", {batch, dims.vision_tokens, dims.vision_width},
               "image.pt");
  check_output(outputs[1], "image_embeds", {batch, dims.image_tokens, dims.hidden}, "image.pt");
  check_output(outputs[2], "image_embeds_proj", {batch, dims.image_tokens, dims.embed}, "image.pt");
  return {outputs[0].toTensor().to(torch::kFloat32), outputs[1].toTensor().to(torch::kFloat32),
          outputs[2].toTensor().to(torch::kFloat32)};
}

TextOutputs Encoder::encode_text(const TextBatch& batch) {
  c10::InferenceMode guard;
  auto outputs =
      run(module("text.pt", text_module_), {batch.input_ids, batch.attention_mask}, 2, "text.pt");
  const Dims& dims = manifest().dims;
  const std::int64_t rows = batch.input_ids.size(0), tokens = batch.input_ids.size(1);
  check_output(outputs[0], "text_embeds", {rows, tokens, dims.hidden}, "text.pt");
  check_output(outputs[1], "text_embeds_proj", {rows, tokens, dims.embed}, "text.pt");
  return {outputs[0].toTensor().to(torch::kFloat32), outputs[1].toTensor().to(torch::kFloat32)};
}

MultimodalOutputs Encoder::encode_multimodal(const torch::Tensor& vision_tokens,
                                             const TextBatch& batch) {
  if (vision_tokens.size(0) != batch.input_ids.size(0)) {
    throw Error(ErrorKind::kInternal, "encode_multimodal: vision and text batch sizes differ");
  }
  c10::InferenceMode guard;
  auto outputs = run(module("multimodal.pt", multimodal_module_),
                     {vision_tokens.to(torch::kFloat32), batch.input_ids, batch.attention_mask}, 2,
                     "multimodal.pt");
  const std::int64_t rows = batch.input_ids.size(0);
  check_output(outputs[0], "multimodal_embeds", {rows, -1, manifest().dims.hidden},
               "multimodal.pt");
  check_output(outputs[1], "itm_logits", {rows, manifest().itm ? 2 : 0}, "multimodal.pt");
  return {outputs[0].toTensor().to(torch::kFloat32), outputs[1].toTensor().to(torch::kFloat32)};
}

}  // namespace mmsearch
