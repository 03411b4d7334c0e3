#include "support/retrieval_fixture.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/bert.h"
#include "model/layers.h"
#include "model/weights.h"

namespace kvrag::test {

const std::vector<std::string>& tiny_words() {
  static const std::vector<std::string> words = [] {
    std::vector<std::string> w;
    const char* syllables[] = {"ka", "lo", "mi", "ren", "tu", "vas", "zor", "pel", "qui", "dan"};
    for (const char* a : syllables) {
      for (const char* b : syllables) w.push_back(std::string(a) + b);
    }
    return w;
  }();
  return words;
}

void write_tiny_encoder(const std::string& dir, uint64_t seed, EncoderShape shape) {
  std::filesystem::create_directories(dir);
  std::vector<std::string> vocab = {"[PAD]",  "[UNK]", "[CLS]", "[SEP]",
                                    "[MASK]", "title", ".",     ","};
  for (int i = 0; i < 10; ++i) vocab.push_back(std::to_string(i));
  for (const auto& w : tiny_words()) vocab.push_back(w);
  {
    std::ofstream out(dir + "/vocab.txt");
    for (const auto& v : vocab) out << v << "\n";
  }
  BertConfig config;
  config.vocab_size = static_cast<int64_t>(vocab.size());
  config.hidden_size = shape.hidden;
  config.num_attention_heads = shape.heads;
  config.num_hidden_layers = shape.layers;
  config.intermediate_size = shape.intermediate;
  config.max_position_embeddings = shape.max_positions;
  std::ofstream(dir + "/config.json") << config.to_json().dump(2);
  BertModel model(config, torch::kFloat32, /*with_pooler=*/false);
  init_parameters(*model, 0.2, seed);
  save_parameters(*model, dir + "/model.safetensors");
}

void write_corpus(const std::string& path, int docs, int words) {
  const auto& w = tiny_words();
  std::ofstream out(path);
  uint64_t state = 12345;
  auto next = [&] {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<size_t>(state >> 33);
  };
  for (int d = 0; d < docs; ++d) {
    std::string text;
    for (int i = 0; i < words; ++i) {
      if (i > 0) text += (i % 9 == 0) ? ". " : " ";
      text += w[next() % w.size()];
    }
    out << nlohmann::json{{"id", "d" + std::to_string(d)},
                          {"title", "title " + std::to_string(d % 10)},
                          {"text", text}}
               .dump()
        << "\n";
  }
}

}  // namespace kvrag::test
