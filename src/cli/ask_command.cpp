// kvrag ask (--workspace DIR | --llm DIR [--index DIR] [--knowledge-encoder DIR])
//           [--retriever dense|bm25|hybrid] [--mode none|context|prefix|context+prefix|auto]
//           [--top-k K] [--abstain-below T] [--auto-threshold T] [--json] "question"
//
// Answers one question and shows what the answer rests on: the evidence segments (id, title,
// score) and a groundedness signal — whether the answer occurs in the evidence, and the LLM's
// mean log-probability per answer token with the mode's input versus closed-book. An answer
// the evidence does not contain and that the evidence makes no likelier deserves suspicion.

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/answerer_options.h"
#include "cli/commands.h"
#include "cli/enum_option.h"
#include "core/error.h"
#include "qa/answerer.h"

namespace kvrag::cli {

void add_ask_command(CLI::App& app, int& exit_code) {
  struct Args {
    AnswerSources sources;
    AnswererOptions answerer;
    std::string mode, question;  // mode "" and top_k 0: the defaults (qa/answer_defaults.h)
    int top_k = 0;
    bool json = false, no_groundedness = false;
  };
  auto args = std::make_shared<Args>();
  args->answerer.citations = true;
  auto* cmd = app.add_subcommand(
      "ask", "Answer a question: closed-book, in-context RAG, dynamic prefix, or both");
  add_answerer_options(cmd, args->sources, args->answerer);
  add_enum_name_option<AnswerMode>(cmd, "--mode", args->mode,
                                   "none (closed-book), context (segments in the prompt), prefix "
                                   "(dynamic prefix), context+prefix, auto (prefix, else "
                                   "context where its groundedness is low); " +
                                       kModeDefault);
  cmd->add_option("--top-k", args->top_k,
                  "segments used (ignored for --mode none); " + kTopKDefault)
      ->check(CLI::Range(1, 100));
  cmd->add_flag("--json", args->json,
                "print {\"answer\", \"evidence\": [{segment_id, doc_id, title, text, score, "
                "attention}], \"cited\", \"groundedness\", \"timings_ms\"}");
  cmd->add_flag("--no-groundedness", args->no_groundedness,
                "skip the two teacher-forced likelihood passes");
  cmd->add_option("question", args->question, "the question")->required();
  cmd->callback([args, &exit_code] {
    const AnswerSetup setup = resolve_answer_setup(args->sources, args->answerer);
    const auto answerer = Answerer::open(setup.options);
    std::vector<AnswerMode> modes;  // the one asked for, else the default
    if (!args->mode.empty()) modes.push_back(parse_answer_mode(args->mode));
    const AnswerDefaults d = answer_defaults(*answerer, setup, modes);
    const AnswerMode mode = modes.empty() ? d.mode : modes.front();
    const int top_k = args->top_k > 0 ? args->top_k : d.top_k;
    if (uses_prefix(mode) && !answerer->prefix_store_status().empty())
      fmt::print(stderr, "ask: {}\n", answerer->prefix_store_status());
    const Answer a = answerer->answer({args->question}, mode, top_k, !args->no_groundedness).at(0);
    if (args->json) {
      fmt::print("{}\n",
                 a.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      exit_code = 0;
      return;
    }
    fmt::print("answer: {}{}\n", a.text.empty() ? "(empty)" : a.text,
               a.abstained ? fmt::format(" (withheld: \"{}\")", a.withheld) : "");
    if (mode == AnswerMode::kAuto) fmt::print("answered by: {}\n", a.answered_by);
    if (!a.evidence.empty()) {
      fmt::print("\nevidence ({}):\n", to_string(mode));
      for (size_t i = 0; i < a.evidence.size(); ++i) {
        const auto& e = a.evidence[i];
        std::string text = e.text;
        if (text.size() > 200) text = text.substr(0, 200) + "…";
        const std::string cited =
            i < a.citations.size() ? fmt::format(", attention {:.1f}%", 100 * a.citations[i]) : "";
        fmt::print("{:>3}. [{}] {} (doc {}, score {:.4f}{})\n     {}\n", i + 1, e.segment_id,
                   e.title, e.doc_id, e.score, cited, text);
      }
    }
    const auto& g = a.groundedness;
    fmt::print("\ngroundedness: answer {} the evidence",
               g.answer_in_evidence ? "occurs in" : "does not occur in");
    if (!args->no_groundedness) {
      fmt::print(
          "; mean log-probability per answer token {:.3f} with the {} input, {:.3f} closed-book",
          g.logprob_with, to_string(mode), g.logprob_without);
      fmt::print("; score {:+.3f}{}", g.score(),
                 !a.flagged   ? ""
                 : *a.flagged ? " (flagged: likely wrong)"
                              : " (not flagged)");
    }
    fmt::print("\ntime: {:.0f} ms (retrieve {:.0f}, {} {:.0f}, generate {:.0f})\n", a.total_ms,
               a.retrieve_ms,
               a.prefix_source == "store"   ? "prefixes from the store"
               : a.prefix_source == "cache" ? "encode (through the cache)"
                                            : "encode",
               a.encode_ms, a.generate_ms);
    exit_code = 0;
  });
}

}  // namespace kvrag::cli
