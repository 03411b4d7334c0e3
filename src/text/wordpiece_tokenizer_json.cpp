// WordPieceTokenizer::from_tokenizer_json: reads a Hugging Face tokenizer.json whose model is
// WordPiece — the vocabulary, the normalizer's options, the decoder's cleanup, the added tokens,
// the post-processor's [CLS]/[SEP] and the padding id — and rejects the pipelines it cannot run.
#include "text/wordpiece_tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_excerpt.h"

namespace kvrag {

namespace {

using nlohmann::json;

// A field of `j`: its value if present and not null, else `fallback`.
template <typename T>
T get_or(const json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return it->get<T>();
}

std::string type_of(const json& j) {
  if (j.is_null()) return "null";
  return j.is_object() ? get_or<std::string>(j, "type", "(untyped)") : "(not an object)";
}

}  // namespace

std::unique_ptr<WordPieceTokenizer> WordPieceTokenizer::from_tokenizer_json(
    const std::string& path) {
  const std::string source = "tokenizer " + path;
  if (std::filesystem::is_directory(path)) fail("{}: is a directory", source);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open: {}", source, std::strerror(errno));

  std::unique_ptr<WordPieceTokenizer> tk(new WordPieceTokenizer());
  std::vector<AddedToken> added;
  try {
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      fail("not valid JSON: {}", e.what());
    }
    KVRAG_CHECK(j.is_object(), "not a tokenizer.json (top level is not an object)");

    // model: WordPiece only. Old files omit "type"; they are recognized by their fields.
    const json& model = j.contains("model") ? j["model"] : json();
    KVRAG_CHECK(model.is_object(), "no \"model\" object");
    std::string type = get_or<std::string>(model, "type", "");
    if (type.empty() && model.contains("continuing_subword_prefix") &&
        model.contains("max_input_chars_per_word") && !model.contains("merges")) {
      type = "WordPiece";
    }
    KVRAG_CHECK(type == "WordPiece", "model type is {}, only WordPiece is supported",
                type.empty() ? "(untyped)" : type);
    WordPieceOptions& o = tk->options_;
    o.unk_token = get_or<std::string>(model, "unk_token", "[UNK]");
    o.continuing_subword_prefix = get_or<std::string>(model, "continuing_subword_prefix", "##");
    o.max_input_chars_per_word = get_or<int>(model, "max_input_chars_per_word", 100);

    const json& vocab = model.contains("vocab") ? model["vocab"] : json();
    KVRAG_CHECK(vocab.is_object() && !vocab.empty(), "model has no vocabulary");
    int64_t max_id = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      KVRAG_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0 &&
                      it.value().get<int64_t>() < (1 << 24),
                  "vocab entry {} has a bad id {}", it.key(), json_excerpt(it.value()));
      max_id = std::max(max_id, it.value().get<int64_t>());
    }
    tk->vocab_.assign(static_cast<size_t>(max_id + 1), std::string());
    std::vector<bool> seen(tk->vocab_.size(), false);
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const auto id = it.value().get<TokenId>();
      KVRAG_CHECK(!seen[id], "vocab id {} is used twice (second: {})", id, it.key());
      seen[id] = true;
      tk->vocab_[id] = it.key();
      tk->ids_[it.key()] = id;
    }

    // normalizer: BertNormalizer, or none at all.
    const json& normalizer = j.contains("normalizer") ? j["normalizer"] : json();
    if (normalizer.is_null()) {
      o.clean_text = o.handle_chinese_chars = o.strip_accents = o.lowercase = false;
    } else {
      KVRAG_CHECK(type_of(normalizer) == "BertNormalizer",
                  "normalizer {} is not supported (expected BertNormalizer)", type_of(normalizer));
      o.clean_text = get_or<bool>(normalizer, "clean_text", true);
      o.handle_chinese_chars = get_or<bool>(normalizer, "handle_chinese_chars", true);
      o.lowercase = get_or<bool>(normalizer, "lowercase", true);
      o.strip_accents = get_or<bool>(normalizer, "strip_accents", o.lowercase);  // null: follow
    }

    const json& pre = j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json();
    KVRAG_CHECK(type_of(pre) == "BertPreTokenizer",
                "pre_tokenizer {} is not supported (expected BertPreTokenizer)", type_of(pre));

    const json& decoder = j.contains("decoder") ? j["decoder"] : json();
    if (type_of(decoder) == "WordPiece") o.decode_cleanup = get_or<bool>(decoder, "cleanup", true);

    // added_tokens: [{"id", "content", "special", "normalized", "lstrip", "rstrip", ...}]
    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      KVRAG_CHECK(j["added_tokens"].is_array(), "added_tokens is not an array");
      for (const json& t : j["added_tokens"]) {
        KVRAG_CHECK(t.is_object() && t.contains("id") && t.contains("content"),
                    "added token without id or content: {}", json_excerpt(t));
        AddedToken a;
        a.id = t["id"].get<TokenId>();
        a.content = t["content"].get<std::string>();
        a.special = get_or<bool>(t, "special", false);
        a.normalized = get_or<bool>(t, "normalized", !a.special);
        a.lstrip = get_or<bool>(t, "lstrip", false);
        a.rstrip = get_or<bool>(t, "rstrip", false);
        a.single_word = get_or<bool>(t, "single_word", false);
        added.push_back(std::move(a));
      }
    }
    auto id_of = [&](const std::string& piece) -> TokenId {
      auto it = tk->ids_.find(piece);
      if (it != tk->ids_.end()) return it->second;
      for (const AddedToken& a : added) {
        if (a.content == piece) return a.id;
      }
      return -1;
    };

    // post_processor: [CLS] $A [SEP], as BertProcessing or the equivalent TemplateProcessing.
    const json& post = j.contains("post_processor") ? j["post_processor"] : json();
    const std::string post_type = type_of(post);
    tk->cls_ = id_of("[CLS]");
    tk->sep_ = id_of("[SEP]");
    if (post_type == "null") {
      tk->add_cls_sep_ = false;
    } else if (post_type == "BertProcessing") {
      KVRAG_CHECK(post.contains("cls") && post.contains("sep"), "BertProcessing without cls/sep");
      tk->cls_ = post["cls"].at(1).get<TokenId>();
      tk->sep_ = post["sep"].at(1).get<TokenId>();
    } else if (post_type == "TemplateProcessing") {
      const json& single = post.at("single");
      auto special_id = [&](const json& item) -> TokenId {
        KVRAG_CHECK(item.contains("SpecialToken"), "unsupported template item {}",
                    json_excerpt(item));
        const std::string name = item["SpecialToken"].at("id").get<std::string>();
        const json& ids = post.at("special_tokens").at(name).at("ids");
        KVRAG_CHECK(ids.size() == 1, "template special token {} has {} ids", name, ids.size());
        return ids[0].get<TokenId>();
      };
      KVRAG_CHECK(single.is_array() && single.size() == 3 && single[1].contains("Sequence"),
                  "TemplateProcessing other than [CLS] $A [SEP] is not supported");
      tk->cls_ = special_id(single[0]);
      tk->sep_ = special_id(single[2]);
    } else {
      fail("post_processor {} is not supported (expected BertProcessing)", post_type);
    }
    if (tk->add_cls_sep_) {
      KVRAG_CHECK(tk->cls_ >= 0 && tk->sep_ >= 0, "no [CLS]/[SEP] token");
    }

    const json& padding = j.contains("padding") ? j["padding"] : json();
    tk->pad_ = padding.is_object() && padding.contains("pad_id") ? padding["pad_id"].get<TokenId>()
                                                                 : id_of("[PAD]");
    tk->mask_ = id_of("[MASK]");
    tk->finish(std::move(added), "model");
  } catch (Error& e) {
    throw e.with_context(source);
  } catch (const json::exception& e) {
    fail("{}: malformed: {}", source, e.what());
  }
  return tk;
}

}  // namespace kvrag
