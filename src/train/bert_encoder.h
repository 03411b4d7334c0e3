// A trainable retriever encoder (BERT/Contriever + pooling) and its folder, as the two retriever
// trainers read and write it: train/retriever_trainer.h (contrastive) and
// train/query_encoder_trainer.h (the LLM's answer likelihood). index/embedder.h reads the same
// folders for inference.
//
// A folder holds config.json (BertConfig + "kvrag_pooling": "mean" | "cls", and for a separate
// query encoder "kvrag_passage_encoder": its passage encoder's folder, relative to this one),
// model.safetensors, and vocab.txt or tokenizer.json.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "model/bert.h"
#include "text/tokenizer.h"

namespace kvrag {

class WordPieceTokenizer;

using TokenIds = std::vector<TokenId>;

struct EncoderFolder {
  std::string dir;             // the folder
  std::string tokenizer_file;  // vocab.txt or tokenizer.json inside it
  std::string pooling = "mean";
};

// Checks DIR (a BERT checkpoint with a tokenizer; `what` names the flag in errors) and reads its
// pooling.
EncoderFolder read_encoder_folder(const std::string& dir, const std::string& what);
std::unique_ptr<WordPieceTokenizer> load_tokenizer(const EncoderFolder& folder);
// The folder's BERT in fp32 for training: the pooler (unused by pooling) frozen. Error if the
// tokenizer has more tokens than the model's vocabulary.
BertModel load_trainable_bert(const EncoderFolder& folder, const WordPieceTokenizer& tok);
// Writes `model` as an encoder folder DIR (atomically, file by file), with `from`'s pooling and
// tokenizer; `passage_encoder` (relative to DIR) makes it a separate query encoder.
void export_encoder(BertModel& model, const EncoderFolder& from, const std::string& dir,
                    const std::string& passage_encoder = "");

// [CLS] tokens [SEP], truncated to max_length keeping the final [SEP].
TokenIds encode_text(const WordPieceTokenizer& tok, const std::string& text, int max_length);
// Pads `rows` into [B, T] ids and mask, runs the encoder, pools → [B, H] (fp32, with autograd).
torch::Tensor embed(BertModel& model, const std::vector<const TokenIds*>& rows, TokenId pad,
                    const std::string& pooling);
// Vectors of many texts without gradients, in length-sorted batches → [N, H].
torch::Tensor embed_all(BertModel& model, const std::vector<TokenIds>& texts, TokenId pad,
                        const std::string& pooling);

}  // namespace kvrag
