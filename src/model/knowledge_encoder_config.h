// The knowledge encoder's configuration (model/knowledge_encoder.h says what each choice does):
// the options a new encoder is made with, and the config its folder's config.json holds.
// Torch-free, so that command lines and trainers' option structs can hold it.
//
// Where a new encoder option goes: its enum or field here (KnowledgeEncoderOptions and
// KnowledgeEncoderConfig), its JSON and its effect in model/knowledge_encoder.cpp, its flag in
// cli/train_prefix_command.cpp.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "checkpoint/model_config.h"
#include "core/enum_names.h"

namespace kvrag {

// The knowledge encoder's choices, each parsed once (command line, config.json) into an enum.
enum class Readout { kQueries, kTokens };  // learned queries, or one entry per segment token
// who cuts a segment: the encoder's WordPiece, the LLM's
enum class SegmentTokenizer { kEncoder, kLlm };
enum class KeyPosition { kNone, kAnswer };  // keys as made, or placed at the answer's position

template <>
struct EnumNames<Readout> {
  static constexpr const char* what = "readout";
  static constexpr EnumName<Readout> values[] = {{Readout::kQueries, "queries"},
                                                 {Readout::kTokens, "tokens"}};
};
template <>
struct EnumNames<SegmentTokenizer> {
  static constexpr const char* what = "segment tokenizer";
  static constexpr EnumName<SegmentTokenizer> values[] = {{SegmentTokenizer::kEncoder, "encoder"},
                                                          {SegmentTokenizer::kLlm, "llm"}};
};
template <>
struct EnumNames<KeyPosition> {
  static constexpr const char* what = "key position";
  static constexpr EnumName<KeyPosition> values[] = {{KeyPosition::kNone, "none"},
                                                     {KeyPosition::kAnswer, "answer"}};
};

// How a new knowledge encoder is made (train-prefix --readout …; init_knowledge_encoder).
struct KnowledgeEncoderOptions {
  // readout queries: P learned queries (tokens: P = max_segment_tokens)
  int64_t prefix_length = 10;
  Readout readout = Readout::kQueries;
  // readout tokens: add the LLM's token embeddings (model/knowledge_encoder.h)
  bool llm_embeddings = false;
  SegmentTokenizer segment_tokenizer = SegmentTokenizer::kEncoder;
  KeyPosition key_position = KeyPosition::kNone;
  int64_t max_segment_tokens = 256;  // encoder tokens per segment, [CLS]/[SEP] included
  double head_std = 0.002;           // initial std of the key/value heads

  // Error naming the option at fault (non-positive sizes, llm_embeddings without readout tokens).
  void validate() const;
};

struct KnowledgeEncoderConfig {
  BertConfig encoder;          // the BERT-family encoder over a segment
  int64_t prefix_length = 10;  // P: learned queries, or (readout "tokens") the longest segment
  Readout readout = Readout::kQueries;
  // readout "tokens": add the LLM's token embeddings (model/knowledge_encoder.h)
  bool llm_embeddings = false;
  SegmentTokenizer segment_tokenizer = SegmentTokenizer::kEncoder;
  KeyPosition key_position = KeyPosition::kNone;
  // tokens per segment it was trained on (0: unknown, folders written before it)
  int64_t max_segment_tokens = 0;
  int64_t llm_layers = 0, llm_kv_heads = 0, llm_head_dim = 0;  // the LLM the prefix is made for
  int64_t llm_vocab_size = 0;   // (0: unknown, in folders written before it)
  std::string llm_fingerprint;  // llm_fingerprint(llm_dir) of that LLM

  // The config for `llm` (layers, kv heads, head dim taken from it) over `encoder`, made as
  // `options` say (readout "tokens": P = the segment length).
  static KnowledgeEncoderConfig for_llm(const BertConfig& encoder, const LlamaConfig& llm,
                                        const std::string& fingerprint,
                                        const KnowledgeEncoderOptions& options);
  bool token_readout() const { return readout == Readout::kTokens; }
  bool reads_llm_pieces() const { return segment_tokenizer == SegmentTokenizer::kLlm; }
  // Encoder tokens of a segment, [CLS]/[SEP] included, at most: max_segment_tokens (the
  // encoder's positions where unknown), and with readout "tokens" P.
  int64_t segment_limit() const;

  nlohmann::json to_json() const;
  // Validates (positive sizes, model_type, known names); errors name `source` and the field.
  static KnowledgeEncoderConfig from_json(const nlohmann::json& j, const std::string& source);
};

}  // namespace kvrag
