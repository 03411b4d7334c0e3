// Training SentencePiece models (the demo's LLM tokenizer) and WordPiece vocabularies (the
// demo's retriever), both torch-free.
//
// SentencePieceTrainer runs inside libkvrag_spm.so, like the tokenizer (its protobuf must not
// meet libtorch's; see sentencepiece_tokenizer.h). The defaults make a LLaMA-style model —
// unk 0, bos 1, eos 2 (LlamaConfig's defaults), pad 3, byte fallback, digits split — with two
// deliberate differences: no normalisation (the text is kept as written) and no dummy prefix,
// so that encoding "Question: q\nAnswer:" and " answer" separately gives exactly the ids of
// encoding their concatenation (the prompt format of qa/prompt.h relies on it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvrag {

struct SentencePieceTrainOptions {
  int vocab_size = 2000;
  std::string model_type = "bpe";  // bpe | unigram
  double character_coverage = 1.0;
  bool byte_fallback = true;
  bool split_digits = true;
  bool add_dummy_prefix = false;
  int max_sentence_length = 8192;  // bytes; longer lines are skipped by the trainer
  int num_threads = 1;             // 1: the result does not depend on thread scheduling
  std::vector<std::string> user_defined_symbols;
};

// Trains on `input_text_path` (one sentence per line; blank lines are ignored) and writes the
// model to `model_path` atomically. Deterministic for the same input and options. Throws Error
// naming the input for a missing/empty file, a bad option or a trainer failure.
void train_sentencepiece(const std::string& input_text_path, const std::string& model_path,
                         const SentencePieceTrainOptions& options = {});

struct WordPieceVocabOptions {
  int vocab_size = 4000;  // upper bound; fewer if the corpus has fewer distinct pieces
  int min_frequency = 2;  // words and suffixes seen fewer times are left out
  bool lowercase = true;  // as the tokenizer will (WordPieceOptions::lowercase)
};

// Builds a BERT-style vocab.txt for `texts`, usable with WordPieceTokenizer::from_vocab_file:
// [PAD] [UNK] [CLS] [SEP] [MASK], then every character of the texts (and its "##" form), then
// the most frequent whole words and "##" word endings until vocab_size. Words are cut as the
// tokenizer cuts them (whitespace, punctuation isolated, lowercased); so every text encodes
// without [UNK]. Deterministic. Writes `vocab_path` atomically.
void build_wordpiece_vocab(const std::vector<std::string>& texts, const std::string& vocab_path,
                           const WordPieceVocabOptions& options = {});

// A SentencePiece piece in WordPiece notation: the word-start mark "▁" dropped ("▁ab" → "ab"),
// a piece inside a word marked ("ab" → "##ab"); lowercased when `lowercase`. Empty for byte and
// control pieces ("<s>", "<0x0A>", …) and for a bare "▁".
std::string wordpiece_spelling(const std::string& piece, bool lowercase = true);

// A WordPiece vocab.txt that cuts words as a SentencePiece model does: [PAD] [UNK] [CLS] [SEP]
// [MASK], every character of the texts (and its "##" form), then `pieces` in their order with
// SentencePiece's word-start mark "▁" turned into WordPiece's notation ("▁ab" → "ab", "ab" →
// "##ab"); pieces with whitespace or punctuation inside, byte and control pieces are left out.
// Lowercased when `lowercase`. The demo's retriever uses it so that the knowledge encoder (made
// from the retriever) reads a segment in nearly the same pieces the LLM writes an answer in — a
// name never seen in training is then spelled in familiar pieces on both sides. Writes
// `vocab_path` atomically.
void build_wordpiece_vocab_from_pieces(const std::vector<std::string>& texts,
                                       const std::vector<std::string>& pieces,
                                       const std::string& vocab_path, bool lowercase = true);

}  // namespace kvrag
