#include "text/sentencepiece_trainer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <set>
#include <unordered_map>

#include "core/atomic_file.h"
#include "core/error.h"
#include "text/sentencepiece_tokenizer.h"

namespace kvrag {
namespace {

using TrainFn = int (*)(const char* const*, const char* const*, size_t, const char*, char*, size_t);

// The module's trainer entry point. SentencePieceTokenizer::module_path() finds and loads the
// module (same search, same flags); dlopen of the same path returns that handle again.
TrainFn train_function() {
  const std::string path = SentencePieceTokenizer::module_path();
  void* lib = dlopen(path.c_str(), SentencePieceTokenizer::module_dlopen_flags());
  KVRAG_CHECK(lib != nullptr, "SentencePiece module {}: {}", path, dlerror());
  auto fn = reinterpret_cast<TrainFn>(dlsym(lib, "kvrag_spm_train"));
  KVRAG_CHECK(fn != nullptr,
              "SentencePiece module {}: missing symbol kvrag_spm_train (an old build?)", path);
  return fn;
}

const char* flag(bool b) { return b ? "true" : "false"; }

bool is_ascii_punct(unsigned char c) {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
         (c >= 123 && c <= 126);
}

// Words as BertPreTokenizer cuts them (whitespace, punctuation on its own), for ASCII text;
// other UTF-8 sequences stay inside words.
void split_words(const std::string& text, bool lowercase,
                 std::unordered_map<std::string, int64_t>& counts) {
  std::string word;
  auto flush = [&] {
    if (!word.empty()) ++counts[word];
    word.clear();
  };
  for (unsigned char c : text) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      flush();
    } else if (is_ascii_punct(c)) {
      flush();
      ++counts[std::string(1, static_cast<char>(c))];
    } else {
      word += static_cast<char>(lowercase && c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
  }
  flush();
}

// The characters of `word`, UTF-8 sequences kept whole.
std::vector<std::string> characters(const std::string& word) {
  std::vector<std::string> out;
  for (size_t i = 0; i < word.size();) {
    const unsigned char c = word[i];
    const size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    out.push_back(word.substr(i, n));
    i += n;
  }
  return out;
}

std::string strip_hashes(const std::string& piece) {
  return piece.rfind("##", 0) == 0 ? piece.substr(2) : piece;
}

}  // namespace

void train_sentencepiece(const std::string& input_text_path, const std::string& model_path,
                         const SentencePieceTrainOptions& options) {
  std::error_code ec;
  KVRAG_CHECK(std::filesystem::is_regular_file(input_text_path, ec) &&
                  std::filesystem::file_size(input_text_path, ec) > 0,
              "train tokenizer: input {}: missing or empty", input_text_path);
  KVRAG_CHECK(options.vocab_size > 0, "train tokenizer: vocab_size must be positive (got {})",
              options.vocab_size);
  KVRAG_CHECK(options.model_type == "bpe" || options.model_type == "unigram",
              "train tokenizer: model_type must be bpe or unigram (got {})", options.model_type);
  std::string symbols;
  for (const auto& s : options.user_defined_symbols) symbols += (symbols.empty() ? "" : ",") + s;
  const std::string tmp = model_path + ".tmp." + std::to_string(getpid());
  std::vector<std::pair<std::string, std::string>> kw = {
      {"input", input_text_path},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"model_type", options.model_type},
      {"character_coverage", std::to_string(options.character_coverage)},
      {"byte_fallback", flag(options.byte_fallback)},
      {"split_digits", flag(options.split_digits)},
      {"add_dummy_prefix", flag(options.add_dummy_prefix)},
      {"remove_extra_whitespaces", "false"},
      {"normalization_rule_name", "identity"},
      {"max_sentence_length", std::to_string(options.max_sentence_length)},
      {"num_threads", std::to_string(options.num_threads)},
      {"input_sentence_size", "0"},  // all sentences: no random sample
      {"shuffle_input_sentence", "false"},
      {"hard_vocab_limit", "false"},  // a small text may not support vocab_size pieces
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "3"},
      {"minloglevel", "2"},  // the trainer's INFO/WARNING chatter
  };
  if (!symbols.empty()) kw.emplace_back("user_defined_symbols", symbols);
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : kw) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  char error[1024] = {0};
  const int rc =
      train_function()(keys.data(), values.data(), keys.size(), tmp.c_str(), error, sizeof(error));
  if (rc != 0) {
    std::filesystem::remove(tmp, ec);
    fail("train tokenizer on {}: {}", input_text_path, error);
  }
  std::filesystem::rename(tmp, model_path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    fail("train tokenizer: cannot write {}", model_path);
  }
}

void build_wordpiece_vocab(const std::vector<std::string>& texts, const std::string& vocab_path,
                           const WordPieceVocabOptions& options) {
  KVRAG_CHECK(options.vocab_size > 5,
              "wordpiece vocab {}: vocab_size must exceed the 5 special tokens", vocab_path);
  std::unordered_map<std::string, int64_t> counts;
  for (const auto& t : texts) split_words(t, options.lowercase, counts);
  KVRAG_CHECK(!counts.empty(), "wordpiece vocab {}: no words in the texts", vocab_path);

  // Byte-pair merges over the distinct words (most frequent pair first, ties by the smaller
  // pair of piece ids), in WordPiece's notation: a piece not at a word start is "##…". Greedy
  // longest-match-first encoding with the resulting vocabulary cuts frequent words whole and
  // rarer ones into frequent parts.
  std::vector<std::string> order;
  for (const auto& [w, n] : counts) order.push_back(w);
  std::sort(order.begin(), order.end());
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  std::unordered_map<std::string, int32_t> id_of;
  for (size_t i = 0; i < vocab.size(); ++i) id_of[vocab[i]] = static_cast<int32_t>(i);
  auto add = [&](const std::string& piece) {
    auto [it, fresh] = id_of.emplace(piece, static_cast<int32_t>(vocab.size()));
    if (fresh) vocab.push_back(piece);
    return it->second;
  };
  std::set<std::string> chars;
  for (const auto& w : order) {
    for (const auto& c : characters(w)) chars.insert(c);
  }
  for (const auto& c : chars) add(c);
  for (const auto& c : chars) add("##" + c);
  struct Word {
    std::vector<int32_t> pieces;
    int64_t count;
  };
  std::vector<Word> words;
  for (const auto& w : order) {
    Word word{{}, counts[w]};
    const auto cs = characters(w);
    for (size_t i = 0; i < cs.size(); ++i)
      word.pieces.push_back(id_of.at(i == 0 ? cs[i] : "##" + cs[i]));
    words.push_back(std::move(word));
  }
  auto key = [](int32_t a, int32_t b) {
    return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
  };
  while (static_cast<int>(vocab.size()) < options.vocab_size) {
    std::unordered_map<uint64_t, int64_t> pairs;
    for (const auto& w : words) {
      for (size_t i = 0; i + 1 < w.pieces.size(); ++i)
        pairs[key(w.pieces[i], w.pieces[i + 1])] += w.count;
    }
    uint64_t best = 0;
    int64_t best_count = 0;
    for (const auto& [k, n] : pairs) {
      if (n > best_count || (n == best_count && k < best)) {
        best = k;
        best_count = n;
      }
    }
    if (best_count < std::max(1, options.min_frequency)) break;
    const int32_t left = static_cast<int32_t>(best >> 32),
                  right = static_cast<int32_t>(best & 0xffffffffu);
    const std::string merged = vocab[left] + strip_hashes(vocab[right]);
    const size_t before = vocab.size();
    const int32_t id = add(merged);
    for (auto& w : words) {
      size_t out = 0;
      for (size_t i = 0; i < w.pieces.size(); ++i) {
        if (i + 1 < w.pieces.size() && w.pieces[i] == left && w.pieces[i + 1] == right) {
          w.pieces[out++] = id;
          ++i;
        } else {
          w.pieces[out++] = w.pieces[i];
        }
      }
      w.pieces.resize(out);
    }
    if (vocab.size() == before) continue;  // the merge spelled an existing piece
  }
  std::string out;
  for (const auto& p : vocab) out += p + "\n";
  write_file_atomic(vocab_path, out);
}

std::string wordpiece_spelling(const std::string& piece, bool lowercase) {
  static const std::string kWordStart = "\xe2\x96\x81";  // U+2581 "▁"
  // <s>, <0x0A>, …
  if (piece.size() >= 2 && piece.front() == '<' && piece.back() == '>') return "";
  const bool start = piece.rfind(kWordStart, 0) == 0;
  std::string body = start ? piece.substr(kWordStart.size()) : piece;
  if (body.empty()) return "";
  if (lowercase) {
    for (auto& c : body) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  return start ? body : "##" + body;
}

void build_wordpiece_vocab_from_pieces(const std::vector<std::string>& texts,
                                       const std::vector<std::string>& pieces,
                                       const std::string& vocab_path, bool lowercase) {
  std::unordered_map<std::string, int64_t> counts;
  for (const auto& t : texts) split_words(t, lowercase, counts);
  KVRAG_CHECK(!counts.empty(), "wordpiece vocab {}: no words in the texts", vocab_path);
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  std::set<std::string> seen(vocab.begin(), vocab.end());
  auto add = [&](const std::string& piece) {
    if (seen.insert(piece).second) vocab.push_back(piece);
  };
  std::set<std::string> chars;
  for (const auto& [w, n] : counts) {
    for (const auto& c : characters(w)) chars.insert(c);
  }
  for (const auto& c : chars) add(c);
  for (const auto& c : chars) add("##" + c);
  static const std::string kWordStart = "\xe2\x96\x81";  // U+2581 "▁"
  for (const auto& piece : pieces) {
    const std::string spelling = wordpiece_spelling(piece, lowercase);
    const std::string body = spelling.rfind("##", 0) == 0 ? spelling.substr(2) : spelling;
    bool plain = !body.empty();
    for (unsigned char c : body) {
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || is_ascii_punct(c) ||
          (c < 0x80 && !std::isalnum(c))) {
        plain = false;
      }
    }
    if (!plain || body.find(kWordStart) != std::string::npos) continue;
    add(spelling);
  }
  std::string out;
  for (const auto& p : vocab) out += p + "\n";
  write_file_atomic(vocab_path, out);
}

}  // namespace kvrag
