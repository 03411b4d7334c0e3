// Opening a Hugging Face checkpoint folder: one safetensors file or an index plus shards.
#include "checkpoint/checkpoint.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"

namespace kvrag {

namespace {

bool is_regular_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A shard name from the index must name a file directly inside the checkpoint folder.
bool is_plain_file_name(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos &&
         name.find("..") == std::string::npos && name != ".";
}

}  // namespace

Checkpoint Checkpoint::open(const std::string& dir_arg) {
  Checkpoint ckpt;
  std::string dir = dir_arg;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  ckpt.dir_ = dir;
  const std::string context = "checkpoint " + dir;

  // Single file.
  const std::string single = dir + "/" + kSingleFile;
  if (is_regular_file(single)) {
    ckpt.listing_ = single;
    std::shared_ptr<SafetensorsFile> file;
    try {
      file = SafetensorsFile::open(single);
    } catch (Error& e) {
      throw e.with_context(context);
    }
    for (const TensorInfo& t : file->tensors()) ckpt.tensors_[t.name] = {file.get(), &t};
    ckpt.files_.push_back(std::move(file));
    return ckpt;
  }

  // Sharded.
  const std::string index_path = dir + "/" + kIndexFile;
  if (!is_regular_file(index_path)) fail("no {} or {} in {}", kSingleFile, kIndexFile, dir);
  ckpt.listing_ = index_path;

  nlohmann::json index;
  try {
    index = nlohmann::json::parse(read_file(index_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {} is not valid JSON: {}", context, index_path, e.what());
  } catch (Error& e) {
    throw e.with_context(context);
  }
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail("{}: {} has no \"weight_map\" object", context, index_path);
  const nlohmann::json& weight_map = index["weight_map"];
  if (weight_map.empty()) fail("{}: {}: \"weight_map\" is empty", context, index_path);

  // Validate names and open each shard once.
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
  for (const auto& [tensor, shard] : weight_map.items()) {
    if (!shard.is_string())
      fail("{}: {}: shard of tensor {} is not a string: {}", context, index_path, tensor,
           shard.dump());
    const std::string name = shard.get<std::string>();
    if (!is_plain_file_name(name))
      fail("{}: {}: shard name \"{}\" of tensor {} is not a plain file name in the folder", context,
           index_path, name, tensor);
    if (shards.count(name)) continue;
    const std::string shard_path = dir + "/" + name;
    if (!is_regular_file(shard_path))
      fail("{}: shard {} listed in {} does not exist", context, shard_path, kIndexFile);
    try {
      shards[name] = SafetensorsFile::open(shard_path);
    } catch (Error& e) {
      throw e.with_context(context);
    }
  }

  // Every tensor of the index is in its shard, and every shard holds only its own tensors.
  for (const auto& [tensor, shard] : weight_map.items()) {
    const SafetensorsFile* file = shards.at(shard.get<std::string>()).get();
    const TensorInfo* info = file->find(tensor);
    if (!info)
      fail("{}: tensor {} listed in {} is missing from shard {}", context, tensor, kIndexFile,
           file->path());
    ckpt.tensors_[tensor] = {file, info};
  }
  for (const auto& [name, file] : shards) {
    for (const TensorInfo& t : file->tensors()) {
      auto it = ckpt.tensors_.find(t.name);
      if (it == ckpt.tensors_.end() || it->second.first != file.get())
        fail("{}: shard {} holds tensor {}, which {} does not assign to it", context, file->path(),
             t.name, kIndexFile);
    }
    ckpt.files_.push_back(file);
  }
  return ckpt;
}

bool Checkpoint::has(const std::string& name) const { return tensors_.count(name) > 0; }

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& entry : tensors_) out.push_back(entry.first);  // std::map: already sorted
  return out;
}

void Checkpoint::fail_missing(const std::string& name) const {
  fail("checkpoint {}: missing tensor {} (file {})", dir_, name, listing_);
}

const TensorInfo& Checkpoint::tensor(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail_missing(name);
  return *it->second.second;
}

const std::string& Checkpoint::file_of(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) fail_missing(name);
  return it->second.first->path();
}

const TensorInfo& Checkpoint::expect(const std::string& name,
                                     const std::vector<int64_t>& shape) const {
  const TensorInfo& t = tensor(name);
  if (t.shape != shape)
    fail("checkpoint {}: file {}: tensor {}: shape {} does not match expected {}", dir_,
         file_of(name), name, shape_string(t.shape), shape_string(shape));
  return t;
}

}  // namespace kvrag
