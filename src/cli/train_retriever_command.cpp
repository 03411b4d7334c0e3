// kvrag train-retriever --out DIR (--init ENC | --init-config CONFIG --vocab VOCAB)
//                       (--questions Q.jsonl --passages P.jsonl [--hard-negatives] |
//                       --pretrain-corpus P.jsonl)
//                       [--dev D.jsonl] [--loss infonce|vicreg] [--temperature T] [--vicreg-coeffs
//                       25,25,1]
//                       [--separate-encoders] [--max-length N] [optimisation flags]
//
// Contrastive retriever training (train/retriever_trainer.h). DIR becomes an encoder folder for
// `kvrag embed` (best epoch by dev top-5) and holds the resume point: rerunning the same command
// after an interruption continues the run. `mpirun -np N kvrag …` trains data parallel
// (train/data_parallel.h).

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "cli/train_options.h"
#include "core/error.h"
#include "train/data_parallel.h"
#include "train/retriever_trainer.h"

namespace kvrag::cli {

void add_train_retriever_command(CLI::App& app, int& exit_code) {
  struct Args {
    RetrieverTrainOptions options;
    std::string vicreg_coeffs = "25,25,1";
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto& o = args->options;
  o.optim.lr = 5e-5;
  o.optim.warmup_steps = 100;
  auto* cmd = app.add_subcommand("train-retriever",
                                 "Train a dense retriever encoder contrastively (InfoNCE or "
                                 "VICReg; supervised or cropping pre-training)");
  cmd->add_option("--out", o.out,
                  "run folder; becomes the trained encoder folder (resumes if it holds a run)")
      ->required();
  cmd->add_option("--init", o.init,
                  "starting encoder folder (BERT/Contriever checkpoint + vocab.txt)");
  cmd->add_option("--init-config", o.init_config,
                  "fresh encoder: a BERT config.json (instead of --init)");
  cmd->add_option("--vocab", o.vocab, "fresh encoder: its WordPiece vocab.txt");
  cmd->add_option("--init-std", o.init_std, "fresh encoder: std of the initial weights")
      ->capture_default_str()
      ->check(kPositive);
  cmd->add_option("--questions", o.questions,
                  "training questions {\"question\", \"gold_passage_id\"} (supervised)");
  cmd->add_option("--passages", o.passages,
                  "passages {\"id\", \"title\", \"text\"} the gold ids refer to");
  cmd->add_flag("--hard-negatives", o.hard_negatives,
                "add each question's best non-gold BM25 passage as a negative");
  cmd->add_option("--pretrain-corpus", o.pretrain_corpus,
                  "unsupervised pre-training on this corpus: two random crops of a passage are a "
                  "positive pair");
  cmd->add_option("--crop-min", o.crop_min, "shortest crop, fraction of the passage")
      ->capture_default_str();
  cmd->add_option("--crop-max", o.crop_max, "longest crop, fraction of the passage")
      ->capture_default_str();
  cmd->add_option("--dev", o.dev,
                  "validation questions: top-5 accuracy over --passages after each epoch");
  cmd->add_option("--loss", o.loss, "contrastive loss")
      ->check(CLI::IsMember({"infonce", "vicreg"}))
      ->capture_default_str();
  cmd->add_option("--temperature", o.temperature, "InfoNCE temperature")->capture_default_str();
  cmd->add_flag("--normalize", o.normalize,
                "InfoNCE on cosine similarity (default: inner product, as the index searches)");
  cmd->add_option("--vicreg-coeffs", args->vicreg_coeffs,
                  "VICReg invariance,variance,covariance coefficients")
      ->capture_default_str();
  cmd->add_flag("--separate-encoders", o.separate_encoders,
                "train separate query and passage encoders (query encoder saved in OUT/query)");
  cmd->add_option("--max-length", o.max_length, "tokens per text incl. [CLS]/[SEP]")
      ->capture_default_str();
  cmd->add_option("--save-every", o.save_every,
                  "optimizer steps between resume points (0: epoch ends only)")
      ->capture_default_str()
      ->check(kNonNegative);
  cmd->add_flag("--json", args->json, "print the result as JSON");
  cmd->add_option("--stop-after-steps", o.stop_after_steps)->group("");  // tests: as if killed
  add_optim_options(cmd, o.optim);
  cmd->callback([args, &exit_code] {
    auto& o = args->options;
    {
      std::vector<double> c;
      std::stringstream ss(args->vicreg_coeffs);
      std::string part;
      try {
        while (std::getline(ss, part, ',')) c.push_back(std::stod(part));
      } catch (const std::exception&) {
        c.clear();
      }
      KVRAG_CHECK(c.size() == 3, "--vicreg-coeffs must be three numbers like 25,25,1, got '{}'",
                  args->vicreg_coeffs);
      o.vicreg_invariance = c[0];
      o.vicreg_variance = c[1];
      o.vicreg_covariance = c[2];
    }
    const auto r = train_retriever(o);
    exit_code = 0;
    if (!Communicator::world().is_root()) return;  // mpirun: rank 0 reports
    nlohmann::json j = {{"out", o.out},
                        {"initial_dev_top5", r.initial_dev_top5},
                        {"dev_top5", r.dev_top5},
                        {"epoch_loss", r.epoch_loss},
                        {"best_dev_top5", r.best_dev_top5},
                        {"best_epoch", r.best_epoch},
                        {"steps", r.steps},
                        {"examples_per_s", r.examples_per_s},
                        {"resumed", r.resumed}};
    if (args->json) {
      fmt::print("{}\n", j.dump());
    } else {
      fmt::print("trained encoder in {}: {} steps, {:.1f} examples/s", o.out, r.steps,
                 r.examples_per_s);
      if (r.best_dev_top5 >= 0) {
        fmt::print(", dev top-5 {:.4f} before training, best {:.4f} (epoch {})", r.initial_dev_top5,
                   r.best_dev_top5, r.best_epoch + 1);
      }
      fmt::print("\n");
    }
  });
}

}  // namespace kvrag::cli
