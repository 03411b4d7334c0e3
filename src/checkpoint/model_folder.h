// What a folder given as a model holds, so that a command handed the wrong kind of folder says
// so ("DIR is a BERT checkpoint (config.json model_type \"bert\"); generate needs a LLaMA
// checkpoint") instead of failing on the first file that kind lacks (tokenizer.model, vocab.txt).
//
// Every loader of a model folder calls check_model_folder first (load_llama, load_bert,
// load_knowledge_encoder, the retriever's Embedder, the trainers' starting points), so every
// command benefits. No torch.
#pragma once

#include <string>
#include <vector>

namespace kvrag {

enum class ModelFolder { kLlama, kBert, kKnowledgeEncoder };

// "a LLaMA checkpoint", "a BERT checkpoint", "a knowledge-encoder folder".
std::string model_folder_name(ModelFolder kind);

// What DIR is, as the subject of a sentence: "a BERT checkpoint (config.json model_type
// \"bert\")", "an index folder (it holds segments.sqlite)", "a kvrag demo workspace (it holds
// stages/)", "a file, not a folder"; "" when nothing tells (no config.json, no model_type, a
// config.json that does not parse: the loader's own errors then say what is wrong).
std::string describe_model_folder(const std::string& dir);

// Throws Error unless DIR may be one of `wanted`:
//   "DIR: no such folder; NEEDED_BY needs a LLaMA checkpoint"
//   "DIR is a BERT checkpoint (config.json model_type \"bert\"); NEEDED_BY needs a LLaMA
//    checkpoint"
// (with an empty `needed_by`: "…; a LLaMA checkpoint is needed"). A folder whose config.json names
// one of the wanted model types passes, and so does one that nothing identifies.
void check_model_folder(const std::string& dir, const std::vector<ModelFolder>& wanted,
                        const std::string& needed_by = "");

}  // namespace kvrag
