// A Hugging Face checkpoint folder: config.json plus either model.safetensors or shards listed
// in model.safetensors.index.json. All files are memory-mapped and validated on open.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace kvrag {

class Checkpoint {
 public:
  // Opens DIR/model.safetensors, or every shard named by DIR/model.safetensors.index.json
  // (which must exist and hold exactly the tensors the index assigns to it). Throws Error.
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/config.json"; }

  bool has(const std::string& name) const;
  std::vector<std::string> names() const;  // sorted
  // Throws Error "checkpoint DIR: missing tensor NAME" if absent.
  const TensorInfo& tensor(const std::string& name) const;
  // The file that holds `name` (for error messages).
  const std::string& file_of(const std::string& name) const;
  // tensor(name), checked to have `shape`; throws Error naming file, tensor, both shapes.
  const TensorInfo& expect(const std::string& name, const std::vector<int64_t>& shape) const;

 private:
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorInfo*>> tensors_;
};

}  // namespace kvrag
