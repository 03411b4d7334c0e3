// A Hugging Face checkpoint folder: config.json plus either model.safetensors or shards listed
// in model.safetensors.index.json. All files are memory-mapped and validated on open.
//
// Errors are kvrag::Error prefixed "checkpoint DIR: ", e.g.
//   checkpoint DIR: missing tensor NAME (file DIR/model.safetensors)
//   checkpoint DIR: file DIR/x.safetensors: tensor NAME: shape [3] does not match expected [4]
//
// A Checkpoint is cheap to copy or move (the mapped files are shared); TensorInfo references
// stay valid as long as any copy lives.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint/safetensors.h"

namespace kvrag {

class Checkpoint {
 public:
  // The files a checkpoint's weights are in: one file, or an index naming *.safetensors shards.
  static constexpr const char* kSingleFile = "model.safetensors";
  static constexpr const char* kIndexFile = "model.safetensors.index.json";

  // Opens DIR/model.safetensors, or every shard named by DIR/model.safetensors.index.json
  // (which must exist and hold exactly the tensors the index assigns to it; each shard is
  // opened once). If both exist the single file wins, as in transformers. Shard names must be
  // plain file names inside DIR ("/" and ".." are rejected). Throws Error.
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/config.json"; }

  bool has(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  // Throws Error "checkpoint DIR: missing tensor NAME (file F)" if absent; F is
  // model.safetensors or the index.
  const TensorInfo& tensor(const std::string& name) const;
  // The file that holds `name` (for error messages); throws like tensor() if absent.
  const std::string& file_of(const std::string& name) const;
  // tensor(name), checked to have `shape`; throws Error naming file, tensor, both shapes.
  const TensorInfo& expect(const std::string& name, const std::vector<int64_t>& shape) const;

 private:
  [[noreturn]] void fail_missing(const std::string& name) const;

  std::string dir_;
  std::string listing_;  // the file that lists the tensors: model.safetensors or the index
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorInfo*>> tensors_;
};

}  // namespace kvrag
