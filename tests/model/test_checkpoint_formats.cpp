// The same weights stored as F32, F16 and BF16, single-file or sharded, must give the same
// model; save_parameters writes checkpoints load_* reads back; loading errors name the tensor.

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/bert.h"
#include "model/fixture_check.h"
#include "model/llama.h"
#include "model/weights.h"
#include "support/test_support.h"

namespace kvrag {
namespace {

namespace fs = std::filesystem;

// Copies config.json and expected.json of `from` into `to`, with weights re-saved in `dtype`.
void resave_llama(const std::string& from, const std::string& to, torch::Dtype dtype) {
  fs::create_directories(to);
  for (const char* f : {"config.json", "expected.json"})
    fs::copy_file(from + "/" + f, to + "/" + f);
  auto model = load_llama(from);
  save_parameters(*model, to + "/model.safetensors", dtype);
}

TEST(CheckpointFormats, TinyLlamaInF32AndF16SingleFilePassesTheFixture) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  // The fixture's BF16 weights are exact in F32 and (at these magnitudes) in F16, so the
  // re-saved checkpoints must meet the same fp32 tolerance.
  for (auto dtype : {torch::kFloat32, torch::kFloat16}) {
    test::TempDir tmp;
    resave_llama(dir, tmp / "model", dtype);
    const auto report = check_fixture(tmp / "model", "", "fp32");
    EXPECT_TRUE(report.ok()) << c10::toString(dtype);
    for (const auto& line : report.lines)
      EXPECT_TRUE(line.ok) << c10::toString(dtype) << " " << line.name;
  }
}

TEST(CheckpointFormats, LoadedInBf16TheWeightsAreExact) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  auto fp32 = load_llama(dir, torch::kFloat32);
  auto bf16 = load_llama(dir, torch::kBFloat16);
  const auto a = fp32->named_parameters(), b = bf16->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) {
    EXPECT_EQ(b[item.key()].scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::equal(item.value(), b[item.key()].to(torch::kFloat32))) << item.key();
  }
}

TEST(CheckpointFormats, BertRoundTripsThroughSaveParameters) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-bert");
  test::TempDir tmp;
  fs::copy_file(dir + "/config.json", tmp / "config.json");
  fs::copy_file(dir + "/expected.json", tmp / "expected.json");
  auto model = load_bert(dir);
  // BertForMaskedLM-style names ("bert." prefix) must load too.
  save_parameters(*model, tmp / "model.safetensors", torch::kFloat32, "bert.");
  EXPECT_TRUE(check_fixture(tmp.path(), "", "fp32").ok());
}

TEST(CheckpointFormats, LoadErrorsNameFileAndTensor) {
  KVRAG_SHARED_PATH_OR_SKIP(dir, "fixtures/tiny-llama");
  auto model = load_llama(dir);
  test::TempDir tmp;
  fs::copy_file(dir + "/config.json", tmp / "config.json");
  // All parameters but one.
  std::vector<torch::Tensor> keep;
  std::vector<TensorToWrite> tensors;
  for (const auto& item : model->named_parameters()) {
    if (item.key() == "model.layers.1.mlp.up_proj.weight") continue;
    keep.push_back(item.value().contiguous());
    tensors.push_back({item.key(), DType::F32, keep.back().sizes().vec(), keep.back().data_ptr()});
  }
  write_safetensors(tmp / "model.safetensors", tensors);
  try {
    load_llama(tmp.path());
    FAIL() << "a checkpoint without model.layers.1.mlp.up_proj.weight loaded";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("model.layers.1.mlp.up_proj.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
  }
  // An integer tensor where a weight belongs.
  std::vector<int64_t> ints(64 * 64, 1);
  for (auto& t : tensors) {
    if (t.name == "model.layers.0.self_attn.q_proj.weight") {
      t.dtype = DType::I64;
      t.data = ints.data();
    }
  }
  tensors.push_back(
      {"model.layers.1.mlp.up_proj.weight", DType::F32, {172, 64}, keep[0].data_ptr()});
  std::vector<float> up(172 * 64, 0.f);
  tensors.back().data = up.data();
  write_safetensors(tmp / "model.safetensors", tensors);
  try {
    load_llama(tmp.path());
    FAIL() << "an I64 weight loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q_proj.weight"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvrag
