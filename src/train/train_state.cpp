#include "train/train_state.h"

#include <algorithm>
#include <filesystem>
#include <random>
#include <sstream>

#include <fmt/ranges.h>

#include "checkpoint/safetensors.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "model/weights.h"

namespace kvrag {

namespace fs = std::filesystem;

std::unique_ptr<torch::optim::AdamW> make_adamw(torch::nn::Module& module,
                                                const OptimOptions& options) {
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& p : module.parameters()) {
    if (!p.requires_grad()) continue;
    (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  KVRAG_CHECK(!decay.empty() || !no_decay.empty(), "nothing to train: no parameter requires grad");
  auto base = torch::optim::AdamWOptions(options.lr)
                  .betas({options.beta1, options.beta2})
                  .eps(options.eps)
                  .weight_decay(options.weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) {
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(base));
  }
  if (!no_decay.empty()) {
    auto nd = base;
    nd.weight_decay(0.0);
    groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(nd));
  }
  return std::make_unique<torch::optim::AdamW>(groups, base);
}

double optimizer_step(torch::optim::Optimizer& optimizer, double lr, double clip_norm) {
  double norm = 0;
  std::vector<torch::Tensor> params;
  for (auto& group : optimizer.param_groups()) {
    group.options().set_lr(lr);
    for (auto& p : group.params()) params.push_back(p);
  }
  if (clip_norm > 0) norm = torch::nn::utils::clip_grad_norm_(params, clip_norm);
  optimizer.step();
  optimizer.zero_grad();
  return norm;
}

namespace {

std::string resume_dir(const std::string& run_dir) { return run_dir + "/resume"; }

}  // namespace

void save_resume_point(const std::string& run_dir, const torch::nn::Module& module,
                       torch::optim::Optimizer& optimizer, nlohmann::json state) {
  const std::string dir = resume_dir(run_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  KVRAG_CHECK(!ec, "cannot create {}: {}", dir, ec.message());
  KVRAG_CHECK(state.is_object(), "resume state must be a JSON object");
  const int64_t step = state.value("step", int64_t(0));
  const std::string params_name = fmt::format("params-{}.safetensors", step);
  const std::string optimizer_name = fmt::format("optimizer-{}.pt", step);

  // Trainable parameters only (the frozen rest comes from the model the run starts from).
  std::vector<torch::Tensor> keep;  // fp32 contiguous copies, alive until written
  std::vector<TensorToWrite> tensors;
  for (const auto& item : module.named_parameters()) {
    if (!item.value().requires_grad()) continue;
    keep.push_back(item.value().detach().to(torch::kFloat32).contiguous());
    const auto& t = keep.back();
    tensors.push_back({item.key(), DType::F32, t.sizes().vec(), t.data_ptr()});
  }
  write_safetensors(dir + "/" + params_name, tensors);

  std::ostringstream bytes;
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  archive.save_to(bytes);
  write_file_atomic(dir + "/" + optimizer_name, bytes.str());

  state["files"] = {{"params", params_name}, {"optimizer", optimizer_name}};
  write_file_atomic(dir + "/state.json", state.dump(2) + "\n");

  // Older data files are no longer referenced.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name != params_name && name != optimizer_name && name != "state.json" &&
        (name.rfind("params-", 0) == 0 || name.rfind("optimizer-", 0) == 0)) {
      fs::remove(entry.path(), ec);
    }
  }
}

bool load_resume_point(const std::string& run_dir, torch::nn::Module& module,
                       torch::optim::Optimizer& optimizer, nlohmann::json* state) {
  const std::string dir = resume_dir(run_dir);
  const std::string state_path = dir + "/state.json";
  if (!fs::exists(state_path)) return false;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(state_path));
    const std::string params_path = dir + "/" + j.at("files").at("params").get<std::string>();
    const std::string optimizer_path = dir + "/" + j.at("files").at("optimizer").get<std::string>();

    const auto file = SafetensorsFile::open(params_path);
    torch::NoGradGuard no_grad;
    for (auto& item : module.named_parameters()) {
      if (!item.value().requires_grad()) continue;
      const TensorInfo* info = file->find(item.key());
      KVRAG_CHECK(info != nullptr, "file {}: missing tensor {}", params_path, item.key());
      const auto t = checkpoint_tensor(*info);
      KVRAG_CHECK(t.sizes() == item.value().sizes(),
                  "file {}: tensor {}: shape {} does not match the model's {}", params_path,
                  item.key(), fmt::format("{}", fmt::join(t.sizes(), ",")),
                  fmt::format("{}", fmt::join(item.value().sizes(), ",")));
      item.value().copy_(t);
    }

    const std::string bytes = read_file(optimizer_path);
    std::istringstream in(bytes);
    torch::serialize::InputArchive archive;
    try {
      archive.load_from(in);
      optimizer.load(archive);
    } catch (const c10::Error& e) {
      fail("file {}: cannot load the optimizer state: {}", optimizer_path,
           e.what_without_backtrace());
    }
  } catch (const nlohmann::json::exception& e) {
    fail("file {}: {}", state_path, e.what());
  }
  *state = std::move(j);
  return true;
}

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(epoch) + 1);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

std::vector<int64_t> length_grouped_order(const std::vector<int64_t>& order,
                                          const std::vector<int64_t>& lengths, int64_t batch_size,
                                          int64_t group_batches, uint64_t seed, int64_t epoch) {
  KVRAG_CHECK(batch_size > 0 && group_batches > 0,
              "length grouping: batch size and group size must be positive");
  const int64_t n = static_cast<int64_t>(order.size());
  for (const auto i : order) {
    KVRAG_CHECK(i >= 0 && i < static_cast<int64_t>(lengths.size()),
                "length grouping: index {} has no length", i);
  }
  std::vector<int64_t> grouped = order;
  const int64_t group = batch_size * group_batches;
  for (int64_t begin = 0; begin < n; begin += group) {
    const auto first = grouped.begin() + begin, last = grouped.begin() + std::min(n, begin + group);
    std::stable_sort(first, last, [&](int64_t a, int64_t b) { return lengths[a] > lengths[b]; });
  }
  const int64_t full = n / batch_size;
  std::vector<int64_t> batches(full);
  for (int64_t b = 0; b < full; ++b) batches[b] = b;
  std::mt19937_64 rng(seed * 0xD1B54A32D192ED03ULL + static_cast<uint64_t>(epoch) + 7);
  std::shuffle(batches.begin(), batches.end(), rng);
  std::vector<int64_t> out;
  out.reserve(order.size());
  for (const auto b : batches)
    out.insert(out.end(), grouped.begin() + b * batch_size, grouped.begin() + (b + 1) * batch_size);
  out.insert(out.end(), grouped.begin() + full * batch_size, grouped.end());
  return out;
}

}  // namespace kvrag
