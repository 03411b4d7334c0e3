// Tiny models for the knowledge-encoder and train-prefix tests: a random BERT folder with a
// character-level WordPiece vocabulary (every lowercase text tokenizes), a random LLaMA.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/bert.h"
#include "model/knowledge_encoder.h"
#include "model/layers.h"
#include "model/llama.h"
#include "model/weights.h"

namespace kvrag::test {

inline std::vector<std::string> char_vocab() {
  std::vector<std::string> v = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".",
                                ",",     "?",     ":",     "'",     "-"};
  for (char c = 'a'; c <= 'z'; ++c) v.push_back(std::string(1, c));
  for (char c = '0'; c <= '9'; ++c) v.push_back(std::string(1, c));
  for (char c = 'a'; c <= 'z'; ++c) v.push_back(std::string("##") + c);
  for (char c = '0'; c <= '9'; ++c) v.push_back(std::string("##") + c);
  return v;
}

inline BertConfig tiny_bert_config() {
  BertConfig c;
  c.vocab_size = static_cast<int64_t>(char_vocab().size());
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.num_hidden_layers = 1;
  c.intermediate_size = 64;
  c.max_position_embeddings = 128;
  return c;
}

// DIR/config.json, DIR/vocab.txt, DIR/model.safetensors (random, `seed`).
inline void write_tiny_bert(const std::string& dir, uint64_t seed = 1) {
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir + "/vocab.txt");
    for (const auto& t : char_vocab()) out << t << "\n";
  }
  const auto config = tiny_bert_config();
  std::ofstream(dir + "/config.json") << config.to_json().dump(2);
  BertModel model(config, torch::kFloat32, /*with_pooler=*/false);
  init_parameters(*model, 0.05, seed);
  save_parameters(*model, dir + "/model.safetensors");
}

inline LlamaConfig tiny_llama_config() {
  LlamaConfig c;
  c.vocab_size = 64;
  c.hidden_size = 32;
  c.intermediate_size = 64;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.num_hidden_layers = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  return c;
}

inline LlamaForCausalLM tiny_llama(uint64_t seed = 3, double std = 0.1) {
  LlamaForCausalLM model(tiny_llama_config(), torch::kFloat32);
  init_parameters(*model, std, seed);
  model->freeze();
  return model;
}

// A LLaMA folder (config.json + model.safetensors) of the tiny random model.
inline void write_tiny_llama(const std::string& dir, uint64_t seed = 3) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << tiny_llama_config().to_json().dump(2);
  auto model = tiny_llama(seed);
  save_parameters(*model, dir + "/model.safetensors");
}

// The demo's kind of encoder: one entry per LLM piece of the segment (at most
// max_segment_tokens), with the LLM's embeddings, keys placed at the answer.
inline KnowledgeEncoderOptions piece_encoder_options(int64_t max_segment_tokens) {
  KnowledgeEncoderOptions options;
  options.readout = Readout::kTokens;
  options.max_segment_tokens = max_segment_tokens;
  options.llm_embeddings = true;
  options.segment_tokenizer = SegmentTokenizer::kLlm;
  options.key_position = KeyPosition::kAnswer;
  return options;
}

inline KnowledgeEncoderConfig tiny_encoder_config(int64_t prefix_length = 4) {
  KnowledgeEncoderOptions options;
  options.prefix_length = prefix_length;
  return KnowledgeEncoderConfig::for_llm(tiny_bert_config(), tiny_llama_config(), "", options);
}

}  // namespace kvrag::test
