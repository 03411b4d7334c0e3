// Data-parallel training (train/data_parallel.h): `mpirun -np 2 kvrag train-retriever|train-prefix`
// against one process with the same global batch, resume with the same number of processes, and
// the refusal of another number. Skipped where mpirun is absent.
//
// Tolerance: the two runs differ only in the order of fp32 sums (each rank pads and multiplies its
// own slice; the allreduce adds two partial gradients), so losses and metrics agree to 1e-5
// relative and the parameters after a few AdamW steps to 2e-4 absolute (an Adam step moves a
// weight by up to about lr whatever the gradient's size, so rounding in a near-zero gradient can
// show at that scale). Measured on the 2-core AVX2 machine: curves within 7e-7, parameters within
// 3e-5. The ranks' own parameters are identical bit for bit (fingerprints).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include <torch/torch.h>

#include "checkpoint/model_config.h"
#include "checkpoint/safetensors.h"
#include "core/atomic_file.h"
#include "support/cli_runner.h"
#include "support/test_support.h"
#include "support/tiny_models.h"

namespace kvrag {
namespace {

using json = nlohmann::json;
using test::TempDir;

// mpirun on PATH, or "".
std::string find_mpirun() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  for (size_t begin = 0; begin <= dirs.size();) {
    const size_t end = std::min(dirs.find(':', begin), dirs.size());
    const std::string candidate = dirs.substr(begin, end - begin) + "/mpirun";
    if (end > begin && std::filesystem::exists(candidate)) return candidate;
    begin = end + 1;
  }
  return "";
}

// Open MPI as CI runs it: as root, 2 processes on however many cores, no process binding, and no
// single-copy shared memory (containers often forbid it).
const char* kMpiEnv =
    "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
    "OMPI_MCA_btl_vader_single_copy_mechanism=none ";

// `kvrag --threads 1 ARGS`, in `ranks` processes (mpirun) or in one (ranks == 0: no mpirun).
// Each mpirun keeps its session directory in a folder of its own: two started at once (ctest -j2)
// both created /tmp/ompi.HOST.UID, and the second failed with "File exists" before any rank ran.
test::CliRun run_ranks(int ranks, const std::string& args) {
  if (ranks == 0) return test::run_kvrag("--threads 1 " + args);
  const TempDir session;
  return test::run_command(std::string(kMpiEnv) + "OMPI_MCA_orte_tmpdir_base=" + session.path() +
                           " " + find_mpirun() + " --oversubscribe --bind-to none -np " +
                           std::to_string(ranks) + " " + KVRAG_CLI_PATH + " --threads 1 " + args);
}

#define SKIP_WITHOUT_MPIRUN()                                                                \
  do {                                                                                       \
    if (find_mpirun().empty())                                                               \
      GTEST_SKIP() << "mpirun not found (Debian: openmpi-bin): data-parallel runs untested"; \
  } while (0)

json report_of(const std::string& out) {
  return json::parse(read_file(out + "/train_report.json"));
}

// The trainable parameters of the run's last resume point.
std::map<std::string, torch::Tensor> resume_params(const std::string& out) {
  const auto state = json::parse(read_file(out + "/resume/state.json"));
  const auto file =
      SafetensorsFile::open(out + "/resume/" + state["files"]["params"].get<std::string>());
  std::map<std::string, torch::Tensor> params;
  for (const auto& t : file->tensors()) {
    params[t.name] =
        torch::from_blob(const_cast<std::byte*>(t.data), t.shape, torch::kFloat32).clone();
  }
  return params;
}

double worst_relative = 0;  // of the last expect_same_curve, for the log

void expect_near_relative(double a, double b, double tolerance, const std::string& what) {
  worst_relative = std::max(worst_relative, std::abs(a - b) / std::max(1.0, std::abs(b)));
  EXPECT_LE(std::abs(a - b), tolerance * std::max(1.0, std::abs(b)))
      << what << ": " << a << " vs " << b;
}

// The epochs of two reports agree on `keys` within `tolerance`; the ranks of `parallel` agree.
void expect_same_curve(const json& parallel, const json& single,
                       const std::vector<std::string>& keys) {
  ASSERT_EQ(parallel["epochs"].size(), single["epochs"].size());
  worst_relative = 0;
  for (size_t e = 0; e < single["epochs"].size(); ++e) {
    for (const auto& key : keys) {
      expect_near_relative(parallel["epochs"][e][key].get<double>(),
                           single["epochs"][e][key].get<double>(), 1e-5,
                           key + " of epoch " + std::to_string(e));
    }
  }
  std::printf("[   info   ] largest relative difference of the curves: %.3g\n", worst_relative);
  const auto& fingerprints = parallel["data_parallel"]["parameter_fingerprints"];
  ASSERT_EQ(parallel["data_parallel"]["ranks"], 2);
  ASSERT_EQ(fingerprints.size(), 2u);
  EXPECT_EQ(fingerprints[0], fingerprints[1]) << "the ranks' parameters differ";
  EXPECT_EQ(single["data_parallel"]["ranks"], 1);
}

void expect_params_near(const std::string& a_out, const std::string& b_out, double tolerance) {
  const auto a = resume_params(a_out), b = resume_params(b_out);
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, t] : a)
    worst = std::max(worst, (t - b.at(name)).abs().max().item<double>());
  std::printf("[   info   ] largest parameter difference: %.3g\n", worst);
  EXPECT_LE(worst, tolerance) << "largest parameter difference";
}

// --- train-retriever: a fresh 2-layer encoder on 16 passages of random words ---------------------

struct RetrieverTask {
  TempDir dir;
  RetrieverTask() {
    std::vector<std::string> words;
    for (const char* a : {"ka", "lo", "mi", "ren", "tu", "vas", "zor", "pel"})
      for (const char* b : {"ka", "lo", "mi", "ren", "tu", "vas", "zor", "pel"})
        words.push_back(std::string(a) + b);
    std::ofstream vocab(dir / "vocab.txt");
    for (const char* s : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}) vocab << s << "\n";
    for (const auto& w : words) vocab << w << "\n";
    BertConfig c;
    c.vocab_size = 5 + static_cast<int64_t>(words.size());
    c.hidden_size = 32;
    c.num_attention_heads = 4;
    c.num_hidden_layers = 2;
    c.intermediate_size = 64;
    c.max_position_embeddings = 64;
    std::ofstream(dir / "config.json") << c.to_json().dump(2);
    std::mt19937_64 rng(5);
    std::ofstream passages(dir / "passages.jsonl"), train(dir / "train.jsonl"),
        dev(dir / "dev.jsonl");
    for (int i = 0; i < 16; ++i) {
      std::vector<std::string> text;
      for (int k = 0; k < 12; ++k) text.push_back(words[rng() % words.size()]);
      std::string joined;
      for (const auto& w : text) joined += (joined.empty() ? "" : " ") + w;
      passages << json{{"id", i}, {"title", words[i]}, {"text", joined}}.dump() << "\n";
      for (int r = 0; r < 3; ++r) {
        const std::string q = text[rng() % 12] + " " + text[rng() % 12] + " " + text[rng() % 12];
        (r < 2 ? train : dev) << json{{"question", q}, {"gold_passage_id", i}}.dump() << "\n";
      }
    }
  }
  // 32 questions in batches of 8 with hard negatives: 4 steps an epoch.
  std::string args(const std::string& out, int epochs = 2) const {
    return "train-retriever --out " + out + " --init-config " + (dir / "config.json") +
           " --vocab " + (dir / "vocab.txt") + " --questions " + (dir / "train.jsonl") +
           " --passages " + (dir / "passages.jsonl") + " --dev " + (dir / "dev.jsonl") +
           " --hard-negatives --temperature 0.1 --lr 3e-3 --warmup 2 --batch-size 8 --epochs " +
           std::to_string(epochs) + " --seed 3 --save-every 1";
  }
};

TEST(DataParallel, RetrieverOnTwoRanksFollowsOneProcess) {
  SKIP_WITHOUT_MPIRUN();
  RetrieverTask task;
  const auto single = run_ranks(0, task.args(task.dir / "single"));
  ASSERT_EQ(single.exit_code, 0) << single.err;
  const auto parallel = run_ranks(2, task.args(task.dir / "parallel"));
  ASSERT_EQ(parallel.exit_code, 0) << parallel.err;
  const auto p = report_of(task.dir / "parallel"), s = report_of(task.dir / "single");
  EXPECT_EQ(p["steps"], 8);
  expect_same_curve(p, s, {"loss", "dev_top5"});
  expect_params_near(task.dir / "parallel", task.dir / "single", 2e-4);
}

TEST(DataParallel, RetrieverResumesOnTheSameRanksAndRefusesOthers) {
  SKIP_WITHOUT_MPIRUN();
  RetrieverTask task;
  const auto straight = run_ranks(2, task.args(task.dir / "straight"));
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  // Stopped after 3 steps (as if killed after a save), then the same command again.
  const auto stopped = run_ranks(2, task.args(task.dir / "run") + " --stop-after-steps 3");
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_EQ(json::parse(read_file(task.dir / "run/resume/state.json"))["step"], 3);
  const auto resumed = run_ranks(2, task.args(task.dir / "run") + " --json");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_EQ(json::parse(resumed.out)["resumed"], true);
  const auto a = report_of(task.dir / "straight"), b = report_of(task.dir / "run");
  EXPECT_EQ(a["epochs"], b["epochs"]);  // the same ranks compute the same sums: exactly
  EXPECT_EQ(a["data_parallel"], b["data_parallel"]);

  // One process cannot continue a run of two (nor could three: the same check).
  const auto other = run_ranks(0, task.args(task.dir / "run"));
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_TRUE(test::contains(other.err, "trained on 2 processes")) << other.err;
}

// train-lm has no data-parallel mode: two ranks would each write the whole run into one folder.
TEST(DataParallel, TrainLmRefusesMpirun) {
  SKIP_WITHOUT_MPIRUN();
  TempDir dir;
  const auto r = run_ranks(2, "train-lm --text " + (dir / "none.txt") + " --tokenizer " +
                                  (dir / "none.model") + " --out " + (dir / "lm"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(test::contains(r.err, "train-lm does not train data parallel")) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "lm"));
}

// --- train-prefix: stories260K (shared) as the frozen LLM ---------------------------------------

TEST(DataParallel, PrefixOnTwoRanksFollowsOneProcess) {
  SKIP_WITHOUT_MPIRUN();
  KVRAG_SHARED_PATH_OR_SKIP(llm, "models/stories260K");
  TempDir dir;
  test::write_tiny_bert(dir / "bert");
  const std::vector<std::string> answers = {"cat", "dog", "ball", "tree", "sun"};
  std::ofstream passages(dir / "passages.jsonl"), train(dir / "train.jsonl");
  for (size_t i = 0; i < answers.size(); ++i) {
    const std::string id = "p" + std::to_string(i);
    passages << json{{"id", id},
                     {"title", "thing " + std::to_string(i)},
                     {"text", "the thing is a " + answers[i] + "."}}
                    .dump()
             << "\n";
    train << json{{"question", "what is thing " + std::to_string(i) + "?"},
                  {"answers", {answers[i]}},
                  {"gold_passage_id", id}}
                 .dump()
          << "\n";
  }
  passages.close();
  train.close();
  // 5 questions in batches of 4: the second batch of an epoch has one row, and rank 1 none.
  auto args = [&](const std::string& out) {
    return "train-prefix --llm " + llm + " --init " + (dir / "bert") + " --train " +
           (dir / "train.jsonl") + " --dev " + (dir / "train.jsonl") + " --oracle --passages " +
           (dir / "passages.jsonl") +
           " --prefix-length 4 --max-new-tokens 4 --lr 2e-3 --batch-size 4 --epochs 2 "
           "--schedule constant --seed 9 --save-every 1 --out " +
           out;
  };
  const auto single = run_ranks(0, args(dir / "single"));
  ASSERT_EQ(single.exit_code, 0) << single.err;
  const auto parallel = run_ranks(2, args(dir / "parallel"));
  ASSERT_EQ(parallel.exit_code, 0) << parallel.err;
  const auto p = report_of(dir / "parallel"), s = report_of(dir / "single");
  EXPECT_EQ(p["steps"], 4);
  expect_same_curve(p, s, {"loss", "dev_em", "dev_loss"});
  expect_params_near(dir / "parallel", dir / "single", 2e-4);
}

}  // namespace
}  // namespace kvrag
