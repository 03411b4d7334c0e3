#include "train/rank_sync.h"

#include <sstream>

#include <fmt/format.h>

#include "core/error.h"
#include "core/fingerprint.h"
#include "train/train_state.h"

namespace kvrag {

std::vector<torch::Tensor> trainable_parameters(const torch::nn::Module& module) {
  std::vector<torch::Tensor> out;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

void allreduce_gradients(const std::vector<torch::Tensor>& params, Communicator& comm) {
  if (!comm.distributed()) return;
  // [gradients of every parameter..., one "defined here" flag per parameter]
  int64_t total = 0;
  for (const auto& p : params) total += p.numel();
  const int64_t count = static_cast<int64_t>(params.size());
  auto flat = torch::zeros({total + count}, torch::kFloat32);
  float* data = flat.data_ptr<float>();
  int64_t offset = 0;
  for (int64_t i = 0; i < count; ++i) {
    const auto& p = params[i];
    const auto& g = p.grad();
    if (g.defined()) {
      flat.narrow(0, offset, p.numel()).copy_(g.reshape({-1}));
      data[total + i] = 1;
    }
    offset += p.numel();
  }
  comm.allreduce_sum(data, total + count);
  offset = 0;
  for (int64_t i = 0; i < count; ++i) {
    auto p = params[i];
    if (data[total + i] > 0) {
      const auto sum = flat.narrow(0, offset, p.numel()).view(p.sizes()).to(p.scalar_type());
      if (p.grad().defined()) {
        p.mutable_grad().copy_(sum);
      } else {
        p.mutable_grad() = sum.clone();
      }
    }
    offset += p.numel();
  }
}

torch::Tensor gather_rows(const torch::Tensor& local, int64_t global_rows, Communicator& comm) {
  if (!comm.distributed()) return local;
  KVRAG_CHECK(local.dim() == 2, "gather_rows: rows must be [b, H]");
  const int64_t H = local.size(1);
  const auto [begin, end] = rank_slice(global_rows, comm.rank(), comm.size());
  KVRAG_CHECK(local.size(0) == end - begin, "gather_rows: rank {} holds {} rows, its slice is {}",
              comm.rank(), local.size(0), end - begin);
  std::vector<int64_t> counts;
  for (int r = 0; r < comm.size(); ++r) {
    const auto [b, e] = rank_slice(global_rows, r, comm.size());
    counts.push_back((e - b) * H);
  }
  const auto mine = local.detach().to(torch::kFloat32).contiguous();
  auto all = torch::empty({global_rows, H}, torch::kFloat32);  // [global_rows, H]
  comm.allgather(mine.data_ptr<float>(), counts, all.data_ptr<float>());
  return torch::cat(
      {all.narrow(0, 0, begin), local.to(torch::kFloat32), all.narrow(0, end, global_rows - end)});
}

std::string parameter_fingerprint(const torch::nn::Module& module) {
  Fnv1a64 h;
  for (const auto& item : module.named_parameters()) {
    if (!item.value().requires_grad()) continue;
    h.add_field(item.key());
    const auto t = item.value().detach().to(torch::kFloat32).contiguous();
    h.add_words(t.data_ptr(), static_cast<size_t>(t.numel()) * sizeof(float));
  }
  return h.hex();
}

std::vector<std::string> check_ranks_agree(const torch::nn::Module& module, Communicator& comm,
                                           const std::string& where) {
  const std::string mine = parameter_fingerprint(module);
  if (!comm.distributed()) return {mine};
  // Each rank's 64 bits as two exact 32-bit halves at its place; the sum gathers them all.
  const uint64_t value = std::stoull(mine, nullptr, 16);
  std::vector<double> halves(2 * comm.size(), 0.0);
  halves[2 * comm.rank()] = static_cast<double>(value >> 32);
  halves[2 * comm.rank() + 1] = static_cast<double>(value & 0xffffffffULL);
  comm.allreduce_sum(halves.data(), static_cast<int64_t>(halves.size()));
  std::vector<std::string> all;
  for (int r = 0; r < comm.size(); ++r) {
    const uint64_t v =
        (static_cast<uint64_t>(halves[2 * r]) << 32) | static_cast<uint64_t>(halves[2 * r + 1]);
    all.push_back(fmt::format("{:016x}", v));
  }
  for (int r = 1; r < comm.size(); ++r) {
    KVRAG_CHECK(all[r] == all[0],
                "{}: the parameters of rank {} ({}) differ from rank 0's ({}): the ranks no "
                "longer train one model",
                where, r, all[r], all[0]);
  }
  return all;
}

bool load_resume_point_on_ranks(const std::string& run_dir, torch::nn::Module& module,
                                torch::optim::Optimizer& optimizer, nlohmann::json* state,
                                Communicator& comm) {
  double resumed = 0;
  std::string saved;
  if (comm.is_root()) {
    nlohmann::json loaded;
    if (load_resume_point(run_dir, module, optimizer, &loaded)) {
      resumed = 1;
      saved = loaded.dump();
    }
  }
  comm.broadcast(&resumed);
  if (comm.distributed()) {
    // Parameters: all of them, trainable or not (cheap, and every rank surely starts alike).
    torch::NoGradGuard no_grad;
    for (auto& p : module.parameters()) {
      auto t = p.detach().to(torch::kFloat32).contiguous();
      comm.broadcast(t.data_ptr(), t.numel() * static_cast<int64_t>(sizeof(float)));
      if (!comm.is_root()) p.copy_(t);
    }
  }
  if (resumed == 0) return false;
  comm.broadcast(&saved);
  if (comm.distributed()) {
    std::string bytes;
    if (comm.is_root()) {
      std::ostringstream out;
      torch::serialize::OutputArchive archive;
      optimizer.save(archive);
      archive.save_to(out);
      bytes = out.str();
    }
    comm.broadcast(&bytes);
    if (!comm.is_root()) {
      std::istringstream in(bytes);
      torch::serialize::InputArchive archive;
      archive.load_from(in);
      optimizer.load(archive);
    }
  }
  auto j = nlohmann::json::parse(saved);
  const int64_t ranks = j.value("ranks", int64_t{1});
  KVRAG_CHECK(ranks == comm.size(),
              "{} holds a run trained on {} process{} and this one has {}: resume it with the same "
              "number (mpirun -np {}), or use another --out",
              run_dir, ranks, ranks == 1 ? "" : "es", comm.size(), ranks);
  *state = std::move(j);
  return true;
}

void save_resume_point_on_ranks(const std::string& run_dir, const torch::nn::Module& module,
                                torch::optim::Optimizer& optimizer, nlohmann::json state,
                                Communicator& comm) {
  if (comm.distributed()) check_ranks_agree(module, comm, run_dir + "/resume");
  if (!comm.is_root()) return;
  state["ranks"] = comm.size();
  save_resume_point(run_dir, module, optimizer, std::move(state));
}

}  // namespace kvrag
