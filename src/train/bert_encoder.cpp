#include "train/bert_encoder.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>

#include "checkpoint/model_folder.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "model/layers.h"
#include "model/weights.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {

namespace fs = std::filesystem;
using json = nlohmann::json;

EncoderFolder read_encoder_folder(const std::string& dir, const std::string& what) {
  EncoderFolder f;
  f.dir = dir;
  KVRAG_CHECK(fs::is_directory(dir), "encoder {}: no such folder", dir);
  check_model_folder(dir, {ModelFolder::kBert}, what);
  if (fs::exists(dir + "/tokenizer.json")) {
    f.tokenizer_file = "tokenizer.json";
  } else if (fs::exists(dir + "/vocab.txt")) {
    f.tokenizer_file = "vocab.txt";
  } else {
    fail("encoder {}: no tokenizer (vocab.txt or tokenizer.json)", dir);
  }
  const std::string config_path = dir + "/config.json";
  try {
    f.pooling = json::parse(read_file(config_path)).value("kvrag_pooling", std::string("mean"));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", config_path, e.what());
  }
  KVRAG_CHECK(f.pooling == "mean" || f.pooling == "cls",
              "{}: kvrag_pooling must be \"mean\" or \"cls\"", config_path);
  return f;
}

std::unique_ptr<WordPieceTokenizer> load_tokenizer(const EncoderFolder& folder) {
  return folder.tokenizer_file == "vocab.txt"
             ? WordPieceTokenizer::from_vocab_file(folder.dir + "/vocab.txt")
             : WordPieceTokenizer::from_tokenizer_json(folder.dir + "/tokenizer.json");
}

BertModel load_trainable_bert(const EncoderFolder& folder, const WordPieceTokenizer& tok) {
  auto m = load_bert(folder.dir, torch::kFloat32);
  KVRAG_CHECK(tok.vocab_size() <= m->config().vocab_size,
              "encoder {}: the tokenizer has {} tokens but the model {}", folder.dir,
              tok.vocab_size(), m->config().vocab_size);
  for (auto& item : m->named_parameters()) {
    if (item.key().rfind("pooler.", 0) == 0) item.value().set_requires_grad(false);
  }
  return m;
}

void export_encoder(BertModel& model, const EncoderFolder& from, const std::string& dir,
                    const std::string& passage_encoder) {
  fs::create_directories(dir);
  auto config = model->config().to_json();
  config["kvrag_pooling"] = from.pooling;
  if (!passage_encoder.empty()) config["kvrag_passage_encoder"] = passage_encoder;
  save_parameters(*model, dir + "/model.safetensors");
  write_file_atomic(dir + "/" + from.tokenizer_file,
                    read_file(from.dir + "/" + from.tokenizer_file));
  write_file_atomic(dir + "/config.json", config.dump(2) + "\n");
}

TokenIds encode_text(const WordPieceTokenizer& tok, const std::string& text, int max_length) {
  TokenIds ids = tok.encode(text, /*add_special=*/true);
  if (static_cast<int64_t>(ids.size()) > max_length) {
    ids.resize(max_length);
    ids.back() = tok.sep_id();
  }
  return ids;
}

torch::Tensor embed(BertModel& model, const std::vector<const TokenIds*>& rows, TokenId pad,
                    const std::string& pooling) {
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t T = 1;
  for (const TokenIds* r : rows) T = std::max<int64_t>(T, static_cast<int64_t>(r->size()));
  auto input = torch::full({B, T}, static_cast<int64_t>(pad), torch::kInt64);  // [B, T]
  auto mask = torch::zeros({B, T}, torch::kInt64);                             // [B, T]
  auto* in_p = input.data_ptr<int64_t>();
  auto* mask_p = mask.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    for (size_t t = 0; t < rows[b]->size(); ++t) {
      in_p[b * T + t] = (*rows[b])[t];
      mask_p[b * T + t] = 1;
    }
  }
  const auto hidden = model->forward(input, mask).last_hidden_state;     // [B, T, H]
  return pooling == "cls" ? cls_pool(hidden) : mean_pool(hidden, mask);  // [B, H]
}

torch::Tensor embed_all(BertModel& model, const std::vector<TokenIds>& texts, TokenId pad,
                        const std::string& pooling) {
  torch::NoGradGuard no_grad;
  const int64_t n = static_cast<int64_t>(texts.size());
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return texts[a].size() > texts[b].size(); });
  auto out = torch::empty({n, model->config().hidden_size}, torch::kFloat32);  // [N, H]
  constexpr int64_t kBatchTokens = 8192;
  for (int64_t start = 0; start < n;) {
    const int64_t T = std::max<int64_t>(1, static_cast<int64_t>(texts[order[start]].size()));
    const int64_t rows = std::clamp<int64_t>(kBatchTokens / T, 1, n - start);
    std::vector<const TokenIds*> batch;
    for (int64_t r = 0; r < rows; ++r) batch.push_back(&texts[order[start + r]]);
    const auto v = embed(model, batch, pad, pooling).to(torch::kFloat32);  // [rows, H]
    const auto idx = torch::from_blob(order.data() + start, {rows}, torch::kInt64).clone();
    out.index_copy_(0, idx, v);
    start += rows;
  }
  return out;
}

}  // namespace kvrag
