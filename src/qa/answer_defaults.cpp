#include "qa/answer_defaults.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/json_excerpt.h"

namespace kvrag {

namespace fs = std::filesystem;

nlohmann::json AnswerDefaults::to_json() const {
  nlohmann::json j = {
      {"retriever", enum_name(retriever)}, {"mode", to_string(mode)}, {"top_k", top_k}};
  // JSON has no infinities: "inf" / "-inf" (flag every answer / none)
  for (const auto& [m, t] : flag_below) {
    j["flag_below"][to_string(m)] =
        std::isfinite(t) ? nlohmann::json(t) : nlohmann::json(t > 0 ? "inf" : "-inf");
  }
  if (!question_encoder.empty()) j["question_encoder"] = question_encoder;
  if (extractive) j["extractive"] = true;
  if (posterior) j["retrieval_posterior"] = posterior->to_json();
  return j;
}

AnswerDefaults AnswerDefaults::from_json(const nlohmann::json& j, const std::string& where) {
  AnswerDefaults d;
  try {
    KVRAG_CHECK(j.is_object(), "not a JSON object {{\"retriever\", \"mode\", \"top_k\"}}");
    const auto text = [&](const char* name) {
      KVRAG_CHECK(j.contains(name) && j[name].is_string(), "\"{}\" must be a string", name);
      return j[name].get<std::string>();
    };
    d.retriever = parse_enum<RetrieverMode>(text("retriever"));
    d.mode = parse_answer_mode(text("mode"));
    const auto& k = j.contains("top_k") ? j["top_k"] : nlohmann::json();
    KVRAG_CHECK(k.is_number_integer() && k.get<int64_t>() >= 1 && k.get<int64_t>() <= 10000,
                "\"top_k\" must be an integer in [1, 10000], not {}", json_excerpt(k));
    d.top_k = k.get<int>();
    if (j.contains("flag_below")) {
      const auto& f = j["flag_below"];
      KVRAG_CHECK(f.is_object(), "\"flag_below\" must be an object {{\"MODE\": threshold}}");
      for (const auto& [name, t] : f.items()) {
        const bool inf = t.is_string() && (t == "inf" || t == "-inf");
        KVRAG_CHECK(t.is_number() || inf,
                    "\"flag_below\": \"{}\" must be a number, \"inf\" or \"-inf\", not {}", name,
                    json_excerpt(t));
        d.flag_below[parse_answer_mode(name)] =
            !inf ? t.get<double>()
                 : (t == "inf" ? 1 : -1) * std::numeric_limits<double>::infinity();
      }
    }
    if (j.contains("extractive")) {
      KVRAG_CHECK(j["extractive"].is_boolean(), "\"extractive\" must be true or false, not {}",
                  json_excerpt(j["extractive"]));
      d.extractive = j["extractive"].get<bool>();
    }
    if (j.contains("retrieval_posterior"))
      d.posterior =
          RetrievalPosterior::from_json(j["retrieval_posterior"], "\"retrieval_posterior\"");
    if (j.contains("question_encoder")) {
      const auto& q = j["question_encoder"];
      const bool inside =
          q.is_string() && !q.get<std::string>().empty() &&
          fs::path(q.get<std::string>()).is_relative() &&
          fs::path(q.get<std::string>()).lexically_normal().begin()->string() != "..";
      KVRAG_CHECK(inside,
                  "\"question_encoder\" must name a folder inside the workspace (a relative "
                  "path), not {}",
                  json_excerpt(q));
      d.question_encoder = q.get<std::string>();
    }
  } catch (Error& e) {
    throw e.with_context(where);
  }
  return d;
}

namespace {

std::string record_path(const std::string& workspace) {
  return (fs::path(workspace) / kAnswerDefaultsFile).string();
}

// DIR made absolute and normal, without a trailing separator ("ws/llm/" → "/cwd/ws/llm"). Links
// are kept: a workspace's llm/ may be a link to a model elsewhere.
fs::path normal_dir(const std::string& dir) {
  fs::path p = fs::absolute(dir).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();
  return p;
}

// The folder that directly holds every given model folder and a record; "" if none.
std::string workspace_of(const AnswererOptions& o) {
  std::optional<fs::path> parent;
  for (const std::string* dir : {&o.llm_dir, &o.index_dir, &o.knowledge_encoder_dir}) {
    if (dir->empty()) continue;
    const fs::path p = normal_dir(*dir).parent_path();
    if (parent && *parent != p) return "";
    parent = p;
  }
  if (!parent || !fs::exists(*parent / kAnswerDefaultsFile)) return "";
  return parent->string();
}

bool retriever_serves(const std::string& index_dir, RetrieverMode mode) {
  return mode == RetrieverMode::kBm25 ? fs::exists(index_dir + "/segments.sqlite")
                                      : has_dense_vectors(index_dir);
}

}  // namespace

void write_answer_defaults(const std::string& workspace, const AnswerDefaults& defaults) {
  write_file_atomic(record_path(workspace), defaults.to_json().dump(2) + "\n");
}

std::optional<AnswerDefaults> read_answer_defaults(const std::string& workspace) {
  const std::string path = record_path(workspace);
  if (!fs::exists(path)) return std::nullopt;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not JSON ({})", path, e.what());
  }
  return AnswerDefaults::from_json(j, path);
}

RetrieverMode fallback_retriever(const std::string& index_dir) {
  const bool bm25 = fs::exists(index_dir + "/segments.sqlite");
  const bool dense = has_dense_vectors(index_dir);
  if (bm25 && dense) return RetrieverMode::kHybrid;
  return dense ? RetrieverMode::kDense : RetrieverMode::kBm25;
}

AnswerSetup resolve_answer_setup(const AnswerSources& sources, AnswererOptions o) {
  const std::string& ws = sources.workspace;
  if (!ws.empty()) {
    KVRAG_CHECK(fs::is_directory(ws),
                "workspace {} does not exist (create it with: kvrag demo --workspace {})", ws, ws);
    KVRAG_CHECK(fs::is_directory(ws + "/llm"),
                "workspace {} has no llm/ yet: run kvrag demo --workspace {} first", ws, ws);
    o.llm_dir = ws + "/llm";
    if (fs::is_directory(ws + "/index")) o.index_dir = ws + "/index";
    if (fs::is_directory(ws + "/knowledge_encoder"))
      o.knowledge_encoder_dir = ws + "/knowledge_encoder";
  }
  if (!sources.llm.empty()) o.llm_dir = sources.llm;
  if (!sources.index.empty()) o.index_dir = sources.index;
  if (!sources.knowledge_encoder.empty()) o.knowledge_encoder_dir = sources.knowledge_encoder;
  KVRAG_CHECK(!o.llm_dir.empty(), "give --workspace DIR or --llm DIR");
  KVRAG_CHECK(o.knowledge_encoder_dir.empty() || !o.index_dir.empty(),
              "the knowledge encoder needs an index to retrieve from (--index)");

  AnswerSetup setup;
  setup.workspace = ws.empty() ? workspace_of(o) : ws;
  if (!setup.workspace.empty()) setup.recorded = read_answer_defaults(setup.workspace);
  if (!sources.retriever.empty()) {
    o.retriever.mode = parse_enum<RetrieverMode>(sources.retriever);
  } else if (!o.index_dir.empty()) {
    const auto& r = setup.recorded;
    o.retriever.mode = r && retriever_serves(o.index_dir, r->retriever)
                           ? r->retriever
                           : fallback_retriever(o.index_dir);
  }
  if (sources.extractive >= 0 || setup.recorded)  // the flag, else the record
    o.extractive = sources.extractive >= 0 ? sources.extractive == 1 : setup.recorded->extractive;
  setup.posterior_given = sources.mixture_temperature > 0;
  if (setup.posterior_given) {
    o.posterior = {1.0 / sources.mixture_temperature, 0.0};
  } else if (setup.recorded && setup.recorded->posterior) {
    o.posterior = *setup.recorded->posterior;
  }
  if (setup.recorded) {
    for (const auto& [m, t] : setup.recorded->flag_below) o.flag_below.emplace(m, t);  // keeps o's
    // The recorded question encoder, for the workspace's own index only (it is paired with it).
    const auto& qe = setup.recorded->question_encoder;
    const bool own_index =
        !o.index_dir.empty() && normal_dir(o.index_dir) == normal_dir(setup.workspace + "/index");
    if (!qe.empty() && own_index && o.retriever.encoder.empty() &&
        o.retriever.mode != RetrieverMode::kBm25) {
      o.retriever.encoder = (fs::path(setup.workspace) / qe).string();
      KVRAG_CHECK(fs::is_directory(o.retriever.encoder),
                  "{}: the recorded question encoder {} does not exist (give --encoder, or remove "
                  "\"question_encoder\" from the record)",
                  record_path(setup.workspace), o.retriever.encoder);
    }
  }
  setup.options = std::move(o);
  return setup;
}

bool serves_mode(const Answerer& answerer, AnswerMode mode) {
  if (uses_index(mode) && !answerer.has_index()) return false;
  if (mode == AnswerMode::kAuto && answerer.options().flag_below.count(AnswerMode::kPrefix) == 0)
    return false;
  return !uses_prefix(mode) || answerer.has_knowledge_encoder();
}

AnswerDefaults answer_defaults(const Answerer& answerer, const AnswerSetup& setup,
                               const std::vector<AnswerMode>& modes) {
  const auto& r = setup.recorded;
  AnswerDefaults d;
  d.retriever = answerer.options().retriever.mode;
  if (r && serves_mode(answerer, r->mode)) {
    d.mode = r->mode;
  } else {
    d.mode = AnswerMode::kNone;
    for (const auto m : {AnswerMode::kPrefix, AnswerMode::kContext}) {
      if (serves_mode(answerer, m)) {
        d.mode = m;
        break;
      }
    }
  }
  // The record's top-k, else as many as fit up to kMaxDefaultTopK; at least 1 (a question that
  // fits no top-k then gets the Answerer's error saying so).
  const int64_t prompt = answerer.prompt_tokens("") +
                         std::min(kTypicalQuestionTokens, answerer.options().max_question_tokens);
  int top_k = r ? r->top_k : kMaxDefaultTopK;
  const auto trained = answerer.trained_top_k();
  for (const auto m : modes.empty() ? std::vector<AnswerMode>{d.mode} : modes) {
    top_k = std::min(top_k, answerer.max_top_k(m, top_k, prompt));
    if (!r && uses_prefix(m) && trained) top_k = std::min(top_k, *trained);
  }
  d.top_k = std::max(top_k, 1);
  d.flag_below = answerer.options().flag_below;
  if (r) d.question_encoder = r->question_encoder;
  d.extractive = answerer.options().extractive;
  if (r) d.posterior = r->posterior;
  return d;
}

}  // namespace kvrag
