#include "index/embedder.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "checkpoint/model_folder.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fingerprint.h"
#include "model/bert.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {

namespace fs = std::filesystem;

struct Embedder::Impl {
  BertModel model{nullptr};
  std::unique_ptr<WordPieceTokenizer> tokenizer;
  EmbedderOptions options;
  std::string pooling = "mean";
  int max_length = 0;
};

namespace {

// The encoder fingerprint's strings: word-wise FNV-1a (core/fingerprint.h), each ended by a
// '\0' byte. (Word-wise because the same hash runs over the weight files.)
void add_field(Fnv1a64& fp, const std::string& s) {
  fp.add_words(s.data(), s.size());
  fp.add("", 1);
}

}  // namespace

std::unique_ptr<Embedder> Embedder::load(const std::string& dir, const EmbedderOptions& options) {
  KVRAG_CHECK(fs::is_directory(dir), "encoder {}: no such folder", dir);
  check_model_folder(dir, {ModelFolder::kBert}, "--encoder");
  const torch::Dtype dtype = parse_model_dtype(options.dtype);
  std::unique_ptr<Embedder> e(new Embedder());
  e->impl_ = std::make_unique<Impl>();
  auto& impl = *e->impl_;
  e->dir_ = dir;
  impl.options = options;

  const std::string config_path = dir + "/config.json";
  const std::string config_text = read_file(config_path);
  try {
    const auto config = nlohmann::json::parse(config_text);
    impl.pooling = config.value("kvrag_pooling", std::string("mean"));
    const std::string pair = config.value("kvrag_passage_encoder", std::string());
    if (!pair.empty()) e->passage_encoder_ = (fs::path(dir) / pair).lexically_normal().string();
  } catch (const nlohmann::json::exception& ex) {
    fail("{}: invalid JSON: {}", config_path, ex.what());
  }
  KVRAG_CHECK(impl.pooling == "mean" || impl.pooling == "cls",
              "{}: kvrag_pooling must be \"mean\" or \"cls\", not \"{}\"", config_path,
              impl.pooling);

  std::string tokenizer_path;
  if (fs::exists(dir + "/tokenizer.json")) {
    tokenizer_path = dir + "/tokenizer.json";
    impl.tokenizer = WordPieceTokenizer::from_tokenizer_json(tokenizer_path);
  } else if (fs::exists(dir + "/vocab.txt")) {
    tokenizer_path = dir + "/vocab.txt";
    impl.tokenizer = WordPieceTokenizer::from_vocab_file(tokenizer_path);
  } else {
    fail("encoder {}: no tokenizer (vocab.txt or tokenizer.json)", dir);
  }

  e->tokenizer_file_ = tokenizer_path;
  impl.model = load_bert(dir, dtype);
  const auto& config = impl.model->config();
  KVRAG_CHECK(impl.tokenizer->vocab_size() <= config.vocab_size,
              "encoder {}: the tokenizer has {} tokens but the model's vocabulary is {}", dir,
              impl.tokenizer->vocab_size(), config.vocab_size);
  impl.max_length = static_cast<int>(config.max_position_embeddings);
  if (options.max_length > 0) impl.max_length = std::min(impl.max_length, options.max_length);

  Fnv1a64 fp;
  add_field(fp, config_text);
  fp.add_file_words(tokenizer_path);
  std::vector<std::string> weights;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".safetensors") weights.push_back(entry.path().string());
  }
  std::sort(weights.begin(), weights.end());
  for (const auto& w : weights) fp.add_file_words(w);
  add_field(fp, impl.pooling);
  add_field(fp, std::to_string(impl.max_length));
  e->fingerprint_ = fp.hex();
  return e;
}

Embedder::~Embedder() = default;

int Embedder::dim() const { return static_cast<int>(impl_->model->config().hidden_size); }
int Embedder::max_length() const { return impl_->max_length; }
const std::string& Embedder::pooling() const { return impl_->pooling; }

nlohmann::json Embedder::info() const {
  return {{"path", fs::absolute(dir_).lexically_normal().string()},
          {"fingerprint", fingerprint_},
          {"dim", dim()},
          {"pooling", pooling()},
          {"max_length", max_length()}};
}

int64_t Embedder::count_tokens(const std::string& text) const {
  return static_cast<int64_t>(impl_->tokenizer->encode(text, /*add_special=*/true).size());
}

void Embedder::encode(const std::vector<std::string>& texts, float* out, int64_t* truncated) const {
  auto& impl = *impl_;
  const int64_t n = static_cast<int64_t>(texts.size());
  const int64_t H = dim();
  int64_t cut = 0;

  std::vector<std::vector<TokenId>> ids(n);
  for (int64_t i = 0; i < n; ++i) {
    ids[i] = impl.tokenizer->encode(texts[i], /*add_special=*/true);
    if (static_cast<int64_t>(ids[i].size()) > impl.max_length) {
      // Keep [CLS] … and end with [SEP], as the tokenizer's truncation does.
      ids[i].resize(impl.max_length);
      ids[i].back() = impl.tokenizer->sep_id();
      ++cut;
    }
  }
  if (truncated != nullptr) *truncated = cut;

  // Length bucketing: longest first, each batch up to batch_tokens padded tokens.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return ids[a].size() > ids[b].size(); });

  torch::InferenceMode inference;
  for (int64_t start = 0; start < n;) {
    const int64_t T = static_cast<int64_t>(ids[order[start]].size());
    const int64_t rows =
        std::clamp<int64_t>(impl.options.batch_tokens / std::max<int64_t>(T, 1), 1, n - start);
    // [B, T]
    auto input =
        torch::full({rows, T}, static_cast<int64_t>(impl.tokenizer->pad_id()), torch::kInt64);
    // [B, T]
    auto mask = torch::zeros({rows, T}, torch::kInt64);
    auto* in_p = input.data_ptr<int64_t>();
    auto* mask_p = mask.data_ptr<int64_t>();
    for (int64_t r = 0; r < rows; ++r) {
      const auto& row = ids[order[start + r]];
      for (size_t t = 0; t < row.size(); ++t) {
        in_p[r * T + t] = row[t];
        mask_p[r * T + t] = 1;
      }
    }
    // [B, T, H]
    const auto hidden = impl.model->forward(input, mask).last_hidden_state.to(torch::kFloat32);
    // [B, H]
    const auto pooled =
        (impl.pooling == "cls" ? cls_pool(hidden) : mean_pool(hidden, mask)).contiguous();
    const float* src = pooled.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(out + order[start + r] * H, src + r * H, H * sizeof(float));
    start += rows;
  }
}

}  // namespace kvrag
