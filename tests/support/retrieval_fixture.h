// A small, fully synthetic retrieval setup for tests: a random-weight BERT encoder with its own
// vocabulary, and a corpus written in that vocabulary.
#pragma once

#include <string>
#include <vector>

namespace kvrag::test {

struct EncoderShape {
  int hidden = 32, layers = 2, heads = 4, intermediate = 64, max_positions = 128;
};

// Writes DIR/config.json, DIR/vocab.txt and DIR/model.safetensors (random weights, `seed`).
void write_tiny_encoder(const std::string& dir, uint64_t seed = 1, EncoderShape shape = {});

// Writes `docs` JSONL documents {"id": "d<i>", "title": "Title <i>", "text": …} of `words`
// words each, drawn deterministically from the encoder's vocabulary.
void write_corpus(const std::string& path, int docs, int words);

// The words of the tiny vocabulary (besides the special tokens).
const std::vector<std::string>& tiny_words();

}  // namespace kvrag::test
