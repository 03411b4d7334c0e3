#include "model/knowledge_encoder.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <unordered_map>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/model_folder.h"
#include "checkpoint/safetensors.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/fingerprint.h"
#include "core/json_excerpt.h"
#include "model/weights.h"
#include "ops/attention.h"
#include "text/sentencepiece_trainer.h"
#include "text/tokenizer.h"
#include "text/wordpiece_tokenizer.h"

namespace kvrag {

namespace {

constexpr const char* kModelType = "kvrag_knowledge_encoder";

// A positive JSON integer at j[key]; errors name the source and the field.
int64_t positive_int(const nlohmann::json& j, const char* key, const std::string& source,
                     const std::string& path) {
  const std::string field = path.empty() ? key : path + "." + key;
  KVRAG_CHECK(j.contains(key) && !j.at(key).is_null(), "config {}: {}: missing", source, field);
  const auto& v = j.at(key);
  KVRAG_CHECK(v.is_number_integer(), "config {}: {}: must be an integer, got {}", source, field,
              json_excerpt(v));
  const int64_t n = v.get<int64_t>();
  KVRAG_CHECK(n > 0, "config {}: {}: must be positive, got {}", source, field, n);
  return n;
}

// j[key] parsed as enum E, or `fallback` where j has no such field (folders written before
// it). Errors name the source and the field.
template <typename E>
E enum_field(const nlohmann::json& j, const char* key, E fallback, const std::string& source) {
  if (!j.contains(key)) return fallback;
  const auto& v = j.at(key);
  KVRAG_CHECK(v.is_string(), "config {}: {}: must be a string, got {}", source, key,
              json_excerpt(v));
  try {
    return parse_enum<E>(v.get<std::string>());
  } catch (Error& e) {
    throw e.with_context(fmt::format("config {}: {}", source, key));
  }
}

}  // namespace

// --- config ------------------------------------------------------------------------------------

void KnowledgeEncoderOptions::validate() const {
  KVRAG_CHECK(prefix_length > 0, "knowledge encoder: prefix length must be positive, got {}",
              prefix_length);
  KVRAG_CHECK(max_segment_tokens >= 2,
              "knowledge encoder: max segment tokens must be at least 2 ([CLS] and [SEP]), got {}",
              max_segment_tokens);
  KVRAG_CHECK(!llm_embeddings || readout == Readout::kTokens,
              "knowledge encoder: llm_embeddings needs readout tokens");
  KVRAG_CHECK(head_std >= 0, "knowledge encoder: head std must not be negative, got {}", head_std);
}

KnowledgeEncoderConfig KnowledgeEncoderConfig::for_llm(const BertConfig& encoder,
                                                       const LlamaConfig& llm,
                                                       const std::string& fingerprint,
                                                       const KnowledgeEncoderOptions& options) {
  options.validate();
  KnowledgeEncoderConfig c;
  c.encoder = encoder;
  c.readout = options.readout;
  c.llm_embeddings = options.llm_embeddings;
  c.segment_tokenizer = options.segment_tokenizer;
  c.key_position = options.key_position;
  c.max_segment_tokens =
      std::min<int64_t>(options.max_segment_tokens, encoder.max_position_embeddings);
  // Readout "tokens": one entry per segment token, as many as the longest segment.
  c.prefix_length = c.token_readout() ? c.max_segment_tokens : options.prefix_length;
  c.llm_layers = llm.num_hidden_layers;
  c.llm_kv_heads = llm.num_key_value_heads;
  c.llm_head_dim = llm.head_dim;
  c.llm_vocab_size = llm.vocab_size;
  c.llm_fingerprint = fingerprint;
  return c;
}

int64_t KnowledgeEncoderConfig::segment_limit() const {
  int64_t n = encoder.max_position_embeddings;
  if (max_segment_tokens > 0) n = std::min(n, max_segment_tokens);
  if (token_readout()) n = std::min(n, prefix_length);  // one prefix entry per token: at most P
  return n;
}

nlohmann::json KnowledgeEncoderConfig::to_json() const {
  return {{"model_type", kModelType},
          {"encoder", encoder.to_json()},
          {"prefix_length", prefix_length},
          {"readout", enum_name(readout)},
          {"llm_embeddings", llm_embeddings},
          {"segment_tokenizer", enum_name(segment_tokenizer)},
          {"key_position", enum_name(key_position)},
          {"max_segment_tokens", max_segment_tokens},
          {"llm",
           {{"layers", llm_layers},
            {"kv_heads", llm_kv_heads},
            {"head_dim", llm_head_dim},
            {"vocab_size", llm_vocab_size},
            {"fingerprint", llm_fingerprint}}}};
}

KnowledgeEncoderConfig KnowledgeEncoderConfig::from_json(const nlohmann::json& j,
                                                         const std::string& source) {
  KVRAG_CHECK(j.is_object(), "config {}: must be a JSON object", source);
  const std::string type = j.contains("model_type") && j.at("model_type").is_string()
                               ? j.at("model_type").get<std::string>()
                               : std::string();
  KVRAG_CHECK(
      type == kModelType,
      "config {}: model_type: expected \"{}\", got {} (is this a knowledge-encoder folder?)",
      source, kModelType, j.contains("model_type") ? json_excerpt(j.at("model_type")) : "nothing");
  KVRAG_CHECK(j.contains("encoder") && j.at("encoder").is_object(),
              "config {}: encoder: missing or not an object", source);
  KVRAG_CHECK(j.contains("llm") && j.at("llm").is_object(),
              "config {}: llm: missing or not an object", source);
  KnowledgeEncoderConfig c;
  c.encoder = BertConfig::from_json(j.at("encoder"), source + " (encoder)");
  c.prefix_length = positive_int(j, "prefix_length", source, "");
  c.readout = enum_field(j, "readout", c.readout, source);
  if (j.contains("llm_embeddings")) {
    KVRAG_CHECK(j.at("llm_embeddings").is_boolean(),
                "config {}: llm_embeddings: must be true or false", source);
    c.llm_embeddings = j.at("llm_embeddings").get<bool>();
  }
  KVRAG_CHECK(!c.llm_embeddings || c.token_readout(),
              "config {}: llm_embeddings needs readout \"tokens\"", source);
  c.segment_tokenizer = enum_field(j, "segment_tokenizer", c.segment_tokenizer, source);
  c.key_position = enum_field(j, "key_position", c.key_position, source);
  if (j.contains("max_segment_tokens") && !j.at("max_segment_tokens").is_null() &&
      j.at("max_segment_tokens") != 0) {
    c.max_segment_tokens = positive_int(j, "max_segment_tokens", source, "");
  }
  const auto& llm = j.at("llm");
  c.llm_layers = positive_int(llm, "layers", source, "llm");
  c.llm_kv_heads = positive_int(llm, "kv_heads", source, "llm");
  c.llm_head_dim = positive_int(llm, "head_dim", source, "llm");
  // Needed for the LLM-piece embedding table; older folders (never "llm") lack it.
  if (llm.contains("vocab_size") || (c.reads_llm_pieces() && c.llm_embeddings)) {
    c.llm_vocab_size = positive_int(llm, "vocab_size", source, "llm");
  }
  if (llm.contains("fingerprint") && !llm.at("fingerprint").is_null()) {
    KVRAG_CHECK(llm.at("fingerprint").is_string(), "config {}: llm.fingerprint: must be a string",
                source);
    c.llm_fingerprint = llm.at("fingerprint").get<std::string>();
  }
  return c;
}

// --- module --------------------------------------------------------------------------------------

PrefixHeadImpl::PrefixHeadImpl(int64_t hidden, int64_t kv_dim, bool with_previous_key,
                               torch::TensorOptions options) {
  key = register_module("key", Linear(hidden, kv_dim, true, options));
  value = register_module("value", Linear(hidden, kv_dim, true, options));
  if (with_previous_key)
    previous_key = register_module("previous_key", Linear(hidden, kv_dim, false, options));
}

KnowledgeEncoderImpl::KnowledgeEncoderImpl(const KnowledgeEncoderConfig& config, torch::Dtype dtype)
    : config_(config), dtype_(dtype) {
  KVRAG_CHECK(config.prefix_length > 0 && config.llm_layers > 0 && config.llm_kv_heads > 0 &&
                  config.llm_head_dim > 0,
              "knowledge encoder: prefix length and LLM layers/kv heads/head dim must be positive");
  const auto options = torch::TensorOptions().dtype(dtype);
  const int64_t H = config.encoder.hidden_size;
  encoder = register_module("encoder", BertModel(config.encoder, dtype, /*with_pooler=*/false));
  if (!config.token_readout()) {
    queries = register_parameter("queries", torch::empty({config.prefix_length, H}, options));
    auto cross = register_module("cross_attention", std::make_shared<torch::nn::Module>());
    cross_query = cross->register_module("query", Linear(H, H, true, options));
    cross_key = cross->register_module("key", Linear(H, H, true, options));
    cross_value = cross->register_module("value", Linear(H, H, true, options));
    cross_output = cross->register_module("output", Linear(H, H, true, options));
  }
  norm = register_module("norm", kvrag::LayerNorm(H, config.encoder.layer_norm_eps, options));
  KVRAG_CHECK(!config.llm_embeddings || config.token_readout(),
              "knowledge encoder: llm_embeddings needs readout tokens");
  KVRAG_CHECK(!(config.llm_embeddings && config.reads_llm_pieces()) || config.llm_vocab_size > 0,
              "knowledge encoder: LLM-piece embeddings need the LLM's vocabulary size");
  if (config.llm_embeddings) {
    const int64_t rows =
        config.reads_llm_pieces() ? config.llm_vocab_size + 1 : config.encoder.vocab_size;
    llm_embeddings = register_parameter("llm_embeddings", torch::zeros({rows, H}, options),
                                        /*requires_grad=*/false);
  }
  prefix_heads = register_module("prefix_heads", torch::nn::ModuleList());
  for (int64_t l = 0; l < config.llm_layers; ++l) {
    prefix_heads->push_back(
        PrefixHead(H, config.llm_kv_heads * config.llm_head_dim, config.llm_embeddings, options));
  }
}

KVPrefix KnowledgeEncoderImpl::forward(const torch::Tensor& ids,
                                       const torch::Tensor& attention_mask,
                                       const torch::Tensor& llm_ids) {
  const int64_t B = ids.size(0), T = ids.size(1), P = config_.prefix_length;
  const int64_t H = config_.encoder.hidden_size, nH = config_.encoder.num_attention_heads,
                hd = H / nH;
  KVRAG_CHECK(!config_.token_readout() || T <= P,
              "knowledge encoder: a segment of {} tokens is longer than its {} prefix entries "
              "(readout tokens)",
              T, P);
  const auto h = encoder->forward(ids, attention_mask).last_hidden_state;  // [B, T, H]
  if (config_.token_readout()) {
    // [B, P, 1]
    const auto keep =
        torch::constant_pad_nd(attention_mask.to(h.scalar_type()), {0, P - T}).unsqueeze(-1);
    auto x = norm(torch::constant_pad_nd(h, {0, 0, 0, P - T}));  // [B, P, H]
    if (!config_.llm_embeddings) return heads(x, keep);
    // The LLM's own embedding of each token, and (for the keys) of the token before it.
    torch::Tensor rows;  // [B, T]: llm_embeddings row of each entry
    if (config_.reads_llm_pieces()) {
      KVRAG_CHECK(llm_ids.defined() && llm_ids.sizes() == ids.sizes(),
                  "knowledge encoder: segment_tokenizer llm needs the LLM piece of every entry "
                  "(llm_ids {})",
                  llm_ids.defined() ? shape_string(llm_ids.sizes().vec()) : std::string("missing"));
      const int64_t none = config_.llm_vocab_size;  // the zero row
      rows = torch::where(llm_ids.ge(0).logical_and(llm_ids.lt(none)), llm_ids,
                          torch::full_like(llm_ids, none));
      rows = torch::constant_pad_nd(rows, {0, P - T}, static_cast<double>(none));
    } else {
      rows = torch::constant_pad_nd(ids, {0, P - T});
    }
    const auto e = llm_embeddings.index_select(0, rows.reshape(-1)).view({B, P, H});
    // [B, P, H]: entry t, token t-1
    const auto previous = torch::constant_pad_nd(e, {0, 0, 1, 0}).narrow(1, 0, P);
    return heads(x + e, keep, previous);
  }

  // Cross-attention: the P learned queries read the segment.
  const auto q = cross_query(queries).view({1, P, nH, hd}).transpose(1, 2);  // [1, nH, P, hd]
  const auto k = cross_key(h).view({B, T, nH, hd}).transpose(1, 2);          // [B, nH, T, hd]
  const auto v = cross_value(h).view({B, T, nH, hd}).transpose(1, 2);        // [B, nH, T, hd]
  // A boolean mask: padding gets a large finite negative score (an all-padding row stays finite).
  const auto visible = attention_mask.to(torch::kBool).view({B, 1, 1, T});
  const auto context = attention(q, k, v, visible);                   // [B, P, H]
  const auto x = norm(queries.unsqueeze(0) + cross_output(context));  // [B, P, H]
  return heads(x, torch::Tensor());
}

KVPrefix KnowledgeEncoderImpl::heads(const torch::Tensor& x, const torch::Tensor& keep,
                                     const torch::Tensor& previous) {
  const int64_t B = x.size(0), P = x.size(1);
  KVPrefix prefix;
  const int64_t kvH = config_.llm_kv_heads, lhd = config_.llm_head_dim;
  for (int64_t l = 0; l < config_.llm_layers; ++l) {
    auto& head = prefix_heads->at<PrefixHeadImpl>(l);
    auto k = head.key(x), v = head.value(x);  // [B, P, kvH·hd]
    if (previous.defined()) k = k + head.previous_key(previous);
    if (keep.defined()) {  // padding entries: zero keys and values (the heads have biases)
      k = k * keep;
      v = v * keep;
    }
    prefix.keys.push_back(k.view({B, P, kvH, lhd}).transpose(1, 2));    // [B, kvH, P, hd]
    prefix.values.push_back(v.view({B, P, kvH, lhd}).transpose(1, 2));  // [B, kvH, P, hd]
  }
  return prefix;
}

void KnowledgeEncoderImpl::init_fresh(uint64_t seed, double head_std) {
  init_parameters(*this, 0.02, seed);
  torch::NoGradGuard no_grad;
  // The queries are also the residual stream under the cross-attention's output, and a
  // LayerNorm follows: at the scale of the cross-attention's output (not unit scale, which
  // would drown what the segment contributes and slowed training several-fold in a test), so
  // that every prefix entry starts out depending on the segment.
  auto gen = at::detail::createCPUGenerator(seed ^ 0x5DEECE66DULL);
  if (queries.defined()) queries.copy_(torch::randn(queries.sizes(), gen, torch::kFloat32) * 0.02);
  if (llm_embeddings.defined()) llm_embeddings.zero_();  // set by init_knowledge_encoder
  for (size_t l = 0; l < prefix_heads->size(); ++l) {
    auto& head = prefix_heads->at<PrefixHeadImpl>(l);
    for (auto* lin : {&head.key, &head.value}) {
      (*lin)->weight.copy_(torch::randn((*lin)->weight.sizes(), gen, torch::kFloat32) * head_std);
      (*lin)->bias.zero_();
    }
  }
}

// --- folders ------------------------------------------------------------------------------------

KnowledgeEncoder init_knowledge_encoder(const std::string& init_dir,
                                        const KnowledgeEncoderConfig& config, uint64_t seed,
                                        double head_std, const torch::Tensor& llm_embeddings,
                                        torch::Dtype dtype) {
  KVRAG_CHECK(config.llm_embeddings == llm_embeddings.defined(),
              "knowledge encoder: llm_embeddings is {} but {} table was given",
              config.llm_embeddings ? "on" : "off", llm_embeddings.defined() ? "a" : "no");
  if (llm_embeddings.defined()) {
    const int64_t rows =
        config.reads_llm_pieces() ? config.llm_vocab_size : config.encoder.vocab_size;
    KVRAG_CHECK(llm_embeddings.dim() == 2 && llm_embeddings.size(0) <= rows &&
                    llm_embeddings.size(1) == config.encoder.hidden_size,
                "knowledge encoder: LLM embeddings of shape {} do not fit [{}, {}] (the LLM's "
                "hidden size must equal the encoder's)",
                shape_string(llm_embeddings.sizes().vec()), rows, config.encoder.hidden_size);
  }
  KnowledgeEncoder model(config, dtype);
  model->init_fresh(seed, head_std);
  torch::NoGradGuard no_grad;
  if (llm_embeddings.defined())
    model->llm_embeddings.narrow(0, 0, llm_embeddings.size(0)).copy_(llm_embeddings);
  const auto checkpoint = Checkpoint::open(init_dir);
  const std::string prefix =
      checkpoint.has("bert.embeddings.word_embeddings.weight") ? "bert." : "";
  load_parameters(*model->encoder, checkpoint, prefix);
  return model;
}

KnowledgeEncoder init_knowledge_encoder(const std::string& init_dir,
                                        const LlamaForCausalLMImpl& llm,
                                        const Tokenizer* llm_tokenizer,
                                        const std::string& llm_fingerprint,
                                        const KnowledgeEncoderOptions& options, uint64_t seed,
                                        torch::Dtype dtype) {
  check_model_folder(init_dir, {ModelFolder::kBert});
  BertConfig bert;
  try {
    bert = BertConfig::load(init_dir + "/config.json");
  } catch (Error& e) {
    throw e.with_context("encoder init folder " + init_dir);
  }
  const auto config = KnowledgeEncoderConfig::for_llm(bert, llm.config(), llm_fingerprint, options);
  torch::Tensor table;  // the LLM's embeddings: of its pieces, or of the encoder's tokens
  if (config.llm_embeddings) {
    const auto& rows = llm.model->embed_tokens->weight;
    if (config.reads_llm_pieces()) {
      table = llm_embedding_table(rows);
    } else {
      KVRAG_CHECK(llm_tokenizer != nullptr,
                  "knowledge encoder: LLM embeddings of encoder tokens need the LLM's tokenizer");
      const auto vocab = WordPieceTokenizer::from_vocab_file(init_dir + "/vocab.txt");
      std::vector<std::string> pieces, spellings;
      for (int32_t id = 0; id < vocab->vocab_size(); ++id) pieces.push_back(vocab->id_to_piece(id));
      for (int32_t id = 0; id < llm_tokenizer->vocab_size(); ++id) {
        spellings.push_back(wordpiece_spelling(llm_tokenizer->id_to_piece(id)));
      }
      table = llm_embeddings_for_vocab(pieces, spellings, rows);
    }
  }
  auto model = init_knowledge_encoder(init_dir, config, seed, options.head_std, table, dtype);
  // previous_key starts as the LLM's own query map (the induction init above).
  if (config.llm_embeddings) init_induction_keys(*model, llm);
  return model;
}

void init_induction_keys(KnowledgeEncoderImpl& encoder, const LlamaForCausalLMImpl& llm) {
  const auto& c = llm.config();
  KVRAG_CHECK(encoder.config().llm_embeddings,
              "induction init: the knowledge encoder has no LLM embeddings");
  KVRAG_CHECK(encoder.config().llm_layers == c.num_hidden_layers &&
                  encoder.config().llm_kv_heads == c.num_key_value_heads &&
                  encoder.config().llm_head_dim == c.head_dim &&
                  encoder.config().encoder.hidden_size == c.hidden_size,
              "induction init: the knowledge encoder was made for another LLM");
  torch::NoGradGuard no_grad;
  const int64_t H = c.hidden_size, kvH = c.num_key_value_heads, group = c.num_attention_heads / kvH,
                hd = c.head_dim;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const auto& layer = llm.model->layers->at<LlamaDecoderLayerImpl>(l);
    auto wq = layer.self_attn->q_proj->float_weight();                 // [nH·hd, H]
    wq = wq.view({kvH, group, hd, H}).mean(1).reshape({kvH * hd, H});  // [kvH·hd, H]
    // · RMSNorm weight
    wq = wq * layer.input_layernorm->weight.to(torch::kFloat32).unsqueeze(0);
    auto& w = encoder.prefix_heads->at<PrefixHeadImpl>(l).previous_key->weight;  // [kvH·hd, H]
    w.copy_(wq.to(w.scalar_type()));
  }
}

KVPrefix place_for_answer(const KnowledgeEncoderConfig& config, const LlamaForCausalLMImpl& llm,
                          const KVPrefix& prefix, const std::vector<int64_t>& prompt_lengths) {
  if (config.key_position != KeyPosition::kAnswer || prefix.empty()) return prefix;
  std::vector<int64_t> positions;
  for (const auto n : prompt_lengths) {
    KVRAG_CHECK(n >= 1,
                "knowledge encoder: an empty prompt has no position to place the prefix at");
    positions.push_back(n - 1);
  }
  return llm.place_prefix(prefix, positions);
}

torch::Tensor llm_embedding_table(const torch::Tensor& llm_rows) {
  torch::NoGradGuard no_grad;
  const auto rows = llm_rows.to(torch::kFloat32);
  return rows * (1.0 / rows.std().item<double>());
}

torch::Tensor llm_embeddings_for_vocab(const std::vector<std::string>& encoder_vocab,
                                       const std::vector<std::string>& llm_spellings,
                                       const torch::Tensor& llm_rows) {
  std::unordered_map<std::string, std::vector<int64_t>> spelled;  // WordPiece spelling → LLM ids
  for (size_t id = 0; id < llm_spellings.size() && static_cast<int64_t>(id) < llm_rows.size(0);
       ++id) {
    if (!llm_spellings[id].empty()) spelled[llm_spellings[id]].push_back(static_cast<int64_t>(id));
  }
  torch::NoGradGuard no_grad;
  const auto rows = llm_embedding_table(llm_rows);  // [V_llm, H], std 1
  auto table = torch::zeros({static_cast<int64_t>(encoder_vocab.size()), rows.size(1)});  // [V, H]
  for (size_t id = 0; id < encoder_vocab.size(); ++id) {
    const auto it = spelled.find(encoder_vocab[id]);
    if (it == spelled.end()) continue;
    table[static_cast<int64_t>(id)].copy_(
        rows.index_select(0, torch::tensor(it->second, torch::kInt64)).mean(0));
  }
  return table;
}

KnowledgeEncoder load_knowledge_encoder(const std::string& dir, torch::Dtype dtype) {
  check_model_folder(dir, {ModelFolder::kKnowledgeEncoder});
  const std::string config_path = dir + "/config.json";
  KVRAG_CHECK(std::filesystem::exists(config_path), "knowledge encoder {}: no config.json", dir);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(config_path));
  } catch (const nlohmann::json::exception& e) {
    fail("config {}: not valid JSON: {}", config_path, e.what());
  }
  const auto config = KnowledgeEncoderConfig::from_json(j, config_path);
  KnowledgeEncoder model(config, dtype);
  const auto checkpoint = Checkpoint::open(dir);
  torch::NoGradGuard no_grad;
  load_parameters(*model, checkpoint);
  model->eval();
  return model;
}

void save_knowledge_encoder(const KnowledgeEncoderImpl& model, const std::string& dir,
                            const std::string& vocab_path) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  KVRAG_CHECK(!ec, "cannot create {}: {}", dir, ec.message());
  const std::string vocab = read_file(vocab_path);
  // Weights first, config last: a folder with a config.json is complete.
  save_parameters(model, dir + "/model.safetensors", model.dtype());
  write_file_atomic(dir + "/vocab.txt", vocab);
  write_file_atomic(dir + "/config.json", model.config().to_json().dump(2) + "\n");
}

std::string knowledge_encoder_fingerprint(const std::string& dir) {
  Fnv1a64 fnv;
  fnv.add_file_words(dir + "/config.json");
  fnv.add_file_words(dir + "/model.safetensors");
  return fnv.hex();
}

std::string llm_fingerprint(const std::string& llm_dir) {
  // config.json canonicalised (whitespace and key order do not matter), then every tensor's
  // name, dtype, shape and its first bytes: different architectures, dtypes or trainings
  // differ without reading gigabytes.
  const auto config = LlamaConfig::load(llm_dir + "/config.json");
  Fnv1a64 fnv;
  fnv.add_field(config.to_json().dump());
  const auto checkpoint = Checkpoint::open(llm_dir);
  for (const auto& name : checkpoint.names()) {
    const auto& t = checkpoint.tensor(name);
    fnv.add_field(name);
    fnv.add_field(dtype_name(t.dtype));
    fnv.add_field(shape_string(t.shape));
    fnv.add(t.data, std::min<size_t>(t.nbytes, 256));
  }
  return fnv.hex();
}

void check_compatible(const KnowledgeEncoderConfig& config, const LlamaConfig& llm,
                      const std::string& fingerprint, const std::string& encoder_dir) {
  const auto mismatch = [&](const char* what, auto encoder_value, auto llm_value) {
    fail("knowledge encoder {} was made for an LLM with {} {}, but this LLM has {}", encoder_dir,
         what, encoder_value, llm_value);
  };
  if (config.llm_layers != llm.num_hidden_layers)
    mismatch("layers", config.llm_layers, llm.num_hidden_layers);
  if (config.llm_kv_heads != llm.num_key_value_heads)
    mismatch("kv heads", config.llm_kv_heads, llm.num_key_value_heads);
  if (config.llm_head_dim != llm.head_dim) mismatch("head dim", config.llm_head_dim, llm.head_dim);
  if (!config.llm_fingerprint.empty() && !fingerprint.empty() &&
      config.llm_fingerprint != fingerprint) {
    fail(
        "knowledge encoder {} was trained for another LLM: fingerprint {} (this LLM: {}); retrain "
        "it with train-prefix --llm for this model",
        encoder_dir, config.llm_fingerprint, fingerprint);
  }
}

KVPrefix concat_prefixes(const std::vector<KVPrefix>& per_rank) {
  KVRAG_CHECK(!per_rank.empty(), "concat_prefixes: no prefixes");
  if (per_rank.size() == 1) return per_rank[0];
  const size_t L = per_rank[0].keys.size();
  KVPrefix out;
  for (size_t l = 0; l < L; ++l) {
    std::vector<torch::Tensor> keys, values;
    for (size_t r = 0; r < per_rank.size(); ++r) {
      const auto& p = per_rank[r];
      KVRAG_CHECK(p.keys.size() == L && p.values.size() == L,
                  "concat_prefixes: rank {} has {} layers, rank 0 has {}", r, p.keys.size(), L);
      KVRAG_CHECK(p.keys[l].size(0) == per_rank[0].keys[l].size(0),
                  "concat_prefixes: rank {} has batch {}, rank 0 has {}", r, p.keys[l].size(0),
                  per_rank[0].keys[l].size(0));
      keys.push_back(p.keys[l]);
      values.push_back(p.values[l]);
    }
    out.keys.push_back(torch::cat(keys, 2));      // [B, kvH, k·P, hd]
    out.values.push_back(torch::cat(values, 2));  // [B, kvH, k·P, hd]
  }
  return out;
}

}  // namespace kvrag
