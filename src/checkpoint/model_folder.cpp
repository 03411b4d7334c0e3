// Telling model folders apart by config.json's model_type and by the files an index folder or a
// demo workspace holds (see model_folder.h).
#include "checkpoint/model_folder.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;

// The model_type each kind's config.json names.
const char* model_type_of(ModelFolder kind) {
  switch (kind) {
    case ModelFolder::kLlama:
      return "llama";
    case ModelFolder::kBert:
      return "bert";
    case ModelFolder::kKnowledgeEncoder:
      return "kvrag_knowledge_encoder";
  }
  return "";
}

// DIR/config.json's "model_type", or "" if there is no such file, it does not parse or names
// no type.
std::string config_model_type(const std::string& dir) {
  const fs::path path = fs::path(dir) / "config.json";
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return "";
  try {
    const auto j = nlohmann::json::parse(read_file(path.string()));
    if (j.is_object() && j.contains("model_type") && j["model_type"].is_string())
      return j["model_type"].get<std::string>();
  } catch (const std::exception&) {
    // Unreadable or invalid JSON: the loader names the problem.
  }
  return "";
}

}  // namespace

std::string model_folder_name(ModelFolder kind) {
  switch (kind) {
    case ModelFolder::kLlama:
      return "a LLaMA checkpoint";
    case ModelFolder::kBert:
      return "a BERT checkpoint";
    case ModelFolder::kKnowledgeEncoder:
      return "a knowledge-encoder folder";
  }
  return "";
}

std::string describe_model_folder(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec)) return "a file, not a folder";
  const std::string type = config_model_type(dir);
  if (!type.empty()) {
    std::string kind = fmt::format("a \"{}\" checkpoint", type);
    for (auto k : {ModelFolder::kLlama, ModelFolder::kBert, ModelFolder::kKnowledgeEncoder}) {
      if (type == model_type_of(k)) kind = model_folder_name(k);
    }
    return fmt::format("{} (config.json model_type \"{}\")", kind, type);
  }
  if (fs::exists(fs::path(dir) / "config.json", ec)) return "";
  for (const char* file : {"segments.sqlite", "dense.faiss", "embeddings"}) {
    if (fs::exists(fs::path(dir) / file, ec))
      return fmt::format("an index folder (it holds {})", file);
  }
  if (fs::is_directory(fs::path(dir) / "stages", ec))
    return "a kvrag demo workspace (it holds stages/)";
  return "";
}

void check_model_folder(const std::string& dir, const std::vector<ModelFolder>& wanted,
                        const std::string& needed_by) {
  std::string want;
  for (size_t i = 0; i < wanted.size(); ++i) {
    want += (i == 0 ? "" : i + 1 == wanted.size() ? " or " : ", ") + model_folder_name(wanted[i]);
  }
  const auto complain = [&](const std::string& what) {
    if (needed_by.empty()) fail("{}; {} is needed", what, want);
    fail("{}; {} needs {}", what, needed_by, want);
  };
  std::error_code ec;
  if (!fs::exists(dir, ec)) complain(fmt::format("{}: no such folder", dir));
  const std::string type = config_model_type(dir);
  for (ModelFolder k : wanted) {
    if (type == model_type_of(k)) return;
  }
  const std::string what = describe_model_folder(dir);
  if (!what.empty()) complain(fmt::format("{} is {}", dir, what));
}

}  // namespace kvrag
