// WordPiece tokenizer, a port of Hugging Face tokenizers' BERT pipeline (see the header):
// construction from a vocab.txt, encoding (with truncation and padding), decoding and lookups.
// The pipeline run over each text is in wordpiece_pipeline.cpp, the tokenizer.json reader in
// wordpiece_tokenizer_json.cpp; wordpiece_internal.h holds what they share.

#include "text/wordpiece_tokenizer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "text/utf8.h"
#include "text/wordpiece_internal.h"

namespace kvrag {
namespace {

using Offset = std::pair<int32_t, int32_t>;

// --- HF WordPiece decoder cleanup --------------------------------------------------------------

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
}

void cleanup_token(std::string& s) {
  static const std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},   {" ?", "?"},     {" !", "!"},     {" ,", ","},
      {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},   {" do not", " don't"},
      {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : kRules) replace_all(s, from, to);
}

}  // namespace

// --- construction ------------------------------------------------------------------------------

WordPieceTokenizer::WordPieceTokenizer() = default;
WordPieceTokenizer::~WordPieceTokenizer() = default;

void WordPieceTokenizer::finish(std::vector<AddedToken> added, const std::string& source) {
  KVRAG_CHECK(options_.max_input_chars_per_word >= 0, "{}: max_input_chars_per_word {} < 0", source,
              options_.max_input_chars_per_word);
  auto unk = ids_.find(options_.unk_token);
  KVRAG_CHECK(unk != ids_.end(), "{}: unknown token {} is not in the vocabulary", source,
              options_.unk_token);
  unk_ = unk->second;

  // Added tokens keep their own ids (usually those of the same strings in the vocabulary); an id
  // past the model's vocabulary extends it.
  for (const AddedToken& t : added) {
    KVRAG_CHECK(t.id >= 0, "{}: added token {} has negative id {}", source, t.content, t.id);
    KVRAG_CHECK(t.id < (1 << 24), "{}: added token {} has id {}, too large", source, t.content,
                t.id);
    check_utf8(t.content);
    if (static_cast<size_t>(t.id) >= vocab_.size()) vocab_.resize(static_cast<size_t>(t.id) + 1);
    vocab_[t.id] = t.content;
  }
  added_ = std::move(added);

  special_.assign(vocab_.size(), false);
  for (const AddedToken& t : added_) {
    if (t.special) special_[t.id] = true;
  }
  max_piece_bytes_ = 0;
  for (const auto& [piece, id] : ids_) max_piece_bytes_ = std::max(max_piece_bytes_, piece.size());

  // Patterns: raw content for normalized = false, normalized content for normalized = true
  // (HF normalizes the content with the tokenizer's own normalizer).
  raw_matcher_ = std::make_unique<AddedMatcher>();
  normalized_matcher_ = std::make_unique<AddedMatcher>();
  std::vector<TokenId> unused;
  Worker w(*this, unused, nullptr);
  for (int i = 0; i < static_cast<int>(added_.size()); ++i) {
    std::u32string content = decode_utf8(added_[i].content);
    if (added_[i].normalized) {
      w.normalize(content.data(), 0, static_cast<int32_t>(content.size()));
      normalized_matcher_->add(w.norm, i);
    } else {
      raw_matcher_->add(std::move(content), i);
    }
  }
  raw_matcher_->build();
  normalized_matcher_->build();
}

std::unique_ptr<WordPieceTokenizer> WordPieceTokenizer::from_vocab_file(const std::string& path,
                                                                        WordPieceOptions options) {
  if (std::filesystem::is_directory(path)) fail("vocab {}: is a directory", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("vocab {}: cannot open: {}", path, std::strerror(errno));

  std::unique_ptr<WordPieceTokenizer> tk(new WordPieceTokenizer());
  tk->options_ = std::move(options);
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    // HF reads each line with trim_end(): "\r\n" files and trailing blanks are fine.
    while (!line.empty() && std::strchr(" \t\r\n\v\f", line.back()) != nullptr) line.pop_back();
    const size_t bad = find_invalid_utf8(line);
    if (bad != std::string::npos) fail("vocab {}: line {}: invalid UTF-8 at byte {}", path, n, bad);
    const auto id = static_cast<TokenId>(tk->vocab_.size());
    tk->ids_[line] = id;  // a repeated line takes the later id, as in HF
    tk->vocab_.push_back(std::move(line));
  }
  if (in.bad()) fail("vocab {}: read error: {}", path, std::strerror(errno));
  if (tk->vocab_.empty()) fail("vocab {}: empty file", path);

  // The special tokens HF's BertTokenizerFast registers (normalized: false).
  std::vector<AddedToken> added;
  auto special = [&](const char* name, bool required) -> TokenId {
    auto it = tk->ids_.find(name);
    if (it == tk->ids_.end()) {
      if (required) fail("vocab {}: no {} token", path, name);
      return -1;
    }
    added.push_back({name, it->second});
    return it->second;
  };
  tk->pad_ = special("[PAD]", true);
  special(tk->options_.unk_token.c_str(), true);
  tk->cls_ = special("[CLS]", true);
  tk->sep_ = special("[SEP]", true);
  tk->mask_ = special("[MASK]", false);
  tk->finish(std::move(added), "vocab " + path);
  return tk;
}

// --- encoding ----------------------------------------------------------------------------------

void WordPieceTokenizer::tokenize(std::string_view text, std::vector<TokenId>& ids,
                                  std::vector<Offset>* offsets) const {
  Worker w(*this, ids, offsets);
  w.run(text);
}

std::vector<TokenId> WordPieceTokenizer::encode(std::string_view text, bool add_special) const {
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 4);
  const bool wrap = add_special && add_cls_sep_;
  if (wrap) ids.push_back(cls_);
  tokenize(text, ids, nullptr);
  if (wrap) ids.push_back(sep_);
  return ids;
}

namespace {

void pad_to(Encoding& e, size_t length, TokenId pad, const std::string& pad_piece) {
  if (e.ids.size() >= length) return;
  const size_t n = length - e.ids.size();
  e.ids.insert(e.ids.end(), n, pad);
  e.type_ids.insert(e.type_ids.end(), n, 0);
  e.attention_mask.insert(e.attention_mask.end(), n, 0);
  e.offsets.insert(e.offsets.end(), n, Offset{0, 0});
  e.tokens.insert(e.tokens.end(), n, pad_piece);
}

}  // namespace

Encoding WordPieceTokenizer::encode_full(std::string_view text,
                                         const EncodeOptions& options) const {
  const bool wrap = options.add_special && add_cls_sep_;
  const int n_special = wrap ? 2 : 0;
  KVRAG_CHECK(options.max_length <= 0 || options.max_length >= n_special,
              "max_length {} leaves no room for the {} special tokens", options.max_length,
              n_special);
  KVRAG_CHECK(!options.pad_to_max_length || options.max_length > 0,
              "pad_to_max_length needs max_length > 0");

  std::vector<TokenId> ids;
  std::vector<Offset> offsets;
  ids.reserve(text.size() / 3 + 4);
  offsets.reserve(ids.capacity());
  tokenize(text, ids, &offsets);
  if (options.max_length > 0) {
    const size_t budget = static_cast<size_t>(options.max_length - n_special);
    if (ids.size() > budget) {
      ids.resize(budget);
      offsets.resize(budget);
    }
  }

  Encoding e;
  const size_t n = ids.size() + n_special;
  e.ids.reserve(n);
  e.offsets.reserve(n);
  if (wrap) {
    e.ids.push_back(cls_);
    e.offsets.emplace_back(0, 0);
  }
  e.ids.insert(e.ids.end(), ids.begin(), ids.end());
  e.offsets.insert(e.offsets.end(), offsets.begin(), offsets.end());
  if (wrap) {
    e.ids.push_back(sep_);
    e.offsets.emplace_back(0, 0);
  }
  e.type_ids.assign(n, 0);
  e.attention_mask.assign(n, 1);
  e.tokens.reserve(n);
  for (TokenId id : e.ids) e.tokens.push_back(vocab_[id]);

  if (options.pad_to_max_length) {
    KVRAG_CHECK(pad_ >= 0, "cannot pad: the vocabulary has no [PAD] token");
    pad_to(e, static_cast<size_t>(options.max_length), pad_, vocab_[pad_]);
  }
  return e;
}

std::vector<Encoding> WordPieceTokenizer::encode_batch(const std::vector<std::string>& texts,
                                                       const EncodeOptions& options) const {
  std::vector<Encoding> out;
  out.reserve(texts.size());
  EncodeOptions row = options;
  row.pad_to_max_length = false;
  KVRAG_CHECK(!options.pad_to_max_length || options.max_length > 0,
              "pad_to_max_length needs max_length > 0");
  size_t longest = 0;
  for (const std::string& t : texts) {
    out.push_back(encode_full(t, row));
    longest = std::max(longest, out.back().ids.size());
  }
  const size_t length =
      options.pad_to_max_length ? static_cast<size_t>(options.max_length) : longest;
  bool needs_pad = false;
  for (const Encoding& e : out) needs_pad |= e.ids.size() < length;
  if (needs_pad) {
    KVRAG_CHECK(pad_ >= 0, "cannot pad: the vocabulary has no [PAD] token");
    for (Encoding& e : out) pad_to(e, length, pad_, vocab_[pad_]);
  }
  return out;
}

// --- decoding and lookups ----------------------------------------------------------------------

bool WordPieceTokenizer::is_special(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < special_.size() && special_[id];
}

std::string WordPieceTokenizer::decode(const std::vector<TokenId>& ids) const {
  const std::string& prefix = options_.continuing_subword_prefix;
  std::string out, token;
  bool first = true;
  for (TokenId id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= vocab_.size() || is_special(id)) continue;
    const std::string& piece = vocab_[id];
    if (first) {
      token = piece;
    } else if (!prefix.empty() && piece.compare(0, prefix.size(), prefix) == 0) {
      token.assign(piece, prefix.size(), std::string::npos);
    } else {
      token.assign(1, ' ');
      token += piece;
    }
    first = false;
    if (options_.decode_cleanup) cleanup_token(token);
    out += token;
  }
  return out;
}

std::string WordPieceTokenizer::id_to_piece(TokenId id) const {
  KVRAG_CHECK(id >= 0 && static_cast<size_t>(id) < vocab_.size(),
              "token id {} is outside the vocabulary [0, {})", id, vocab_.size());
  return vocab_[id];
}

std::optional<TokenId> WordPieceTokenizer::piece_to_id(std::string_view piece) const {
  for (const AddedToken& t : added_) {
    if (t.content == piece) return t.id;
  }
  auto it = ids_.find(std::string(piece));
  if (it == ids_.end()) return std::nullopt;
  return it->second;
}

}  // namespace kvrag
