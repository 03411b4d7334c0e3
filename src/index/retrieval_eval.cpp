// Top-k retrieval accuracy and gold-passage recall (see retrieval_eval.h).
#include "index/retrieval_eval.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <unordered_map>

#include "core/error.h"
#include "eval/answer_match.h"

namespace kvrag {

using nlohmann::json;

std::vector<Question> read_questions(const std::string& path, bool allow_empty) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("questions {}: cannot open: {}", path, std::strerror(errno));
  std::vector<Question> out;
  std::string line;
  int64_t lines = 0;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    lines = n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto bad = [&](const std::string& why) { fail("questions {}: line {}: {}", path, n, why); };
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      bad(std::string("invalid JSON: ") + e.what());
    }
    if (!j.is_object()) bad("not a JSON object");
    Question q;
    auto it = j.find("question");
    if (it == j.end() || !it->is_string() || it->get<std::string>().empty()) {
      bad("missing or empty \"question\"");
    }
    q.question = it->get<std::string>();
    if (auto a = j.find("answers"); a != j.end() && !a->is_null()) {
      if (!a->is_array()) bad("\"answers\" is not an array");
      for (const auto& x : *a) {
        if (!x.is_string()) bad("\"answers\" holds a non-string");
        q.answers.push_back(x.get<std::string>());
      }
    }
    if (auto g = j.find("gold_passage_id"); g != j.end() && !g->is_null()) {
      if (g->is_string()) {
        q.gold_passage_id = g->get<std::string>();
      } else if (g->is_number()) {
        q.gold_passage_id = g->dump();
      } else {
        bad("\"gold_passage_id\" is neither a string nor a number");
      }
    }
    for (auto [key, field] : {std::pair<const char*, std::string*>{"group", &q.group},
                              {"twin_passage_id", &q.twin_passage_id}}) {
      if (auto f = j.find(key); f != j.end() && !f->is_null()) {
        if (!f->is_string()) bad(fmt::format("\"{}\" is not a string", key));
        *field = f->get<std::string>();
      }
    }
    if (auto s = j.find("stereotypical"); s != j.end() && !s->is_null()) {
      if (!s->is_boolean()) bad("\"stereotypical\" is not true or false");
      q.stereotypical = s->get<bool>() ? 1 : 0;
    }
    out.push_back(std::move(q));
  }
  if (in.bad()) fail("questions {}: read error: {}", path, std::strerror(errno));
  if (out.empty() && !allow_empty) {
    fail("questions {}: no questions ({}); pass --allow-empty to accept", path,
         lines == 0 ? "the file is empty" : "the file has only blank lines");
  }
  return out;
}

RetrievalReport evaluate_retrieval(Retriever& retriever, const SegmentStore& store,
                                   const std::vector<Question>& questions,
                                   const std::vector<int>& ks, int batch) {
  KVRAG_CHECK(!ks.empty(), "evaluate_retrieval: no k given");
  KVRAG_CHECK(batch > 0, "evaluate_retrieval: batch must be positive, got {}", batch);
  for (int k : ks) KVRAG_CHECK(k > 0, "evaluate_retrieval: k must be positive, got {}", k);
  const int depth = *std::max_element(ks.begin(), ks.end());
  constexpr int kNever = std::numeric_limits<int>::max();

  // First rank (1-based) with an answer / the gold document, per question.
  std::vector<int> answer_rank(questions.size(), kNever), gold_rank(questions.size(), kNever);
  std::unordered_map<int64_t, Segment> cache;  // segments of this batch, text as answer tokens
  for (size_t b = 0; b < questions.size(); b += static_cast<size_t>(batch)) {
    const size_t e = std::min(questions.size(), b + static_cast<size_t>(batch));
    std::vector<std::string> texts;
    for (size_t i = b; i < e; ++i) texts.push_back(questions[i].question);
    const auto results = retriever.search(texts, depth);
    KVRAG_CHECK(results.size() == texts.size(),
                "retriever returned {} result lists for {} questions", results.size(),
                texts.size());
    cache.clear();
    for (size_t i = b; i < e; ++i) {
      const Question& q = questions[i];
      std::vector<std::string> answers;
      for (const std::string& a : q.answers) {
        std::string n = answer_tokens(a);
        if (!n.empty()) answers.push_back(std::move(n));
      }
      const auto& hits = results[i - b];
      for (size_t r = 0; r < hits.size() && r < static_cast<size_t>(depth); ++r) {
        auto it = cache.find(hits[r].id);
        if (it == cache.end()) {
          Segment s = store.get(hits[r].id);
          s.text = answer_tokens(s.text);  // answers are matched in the segment text (DPR)
          it = cache.emplace(hits[r].id, std::move(s)).first;
        }
        const Segment& s = it->second;
        const int rank = static_cast<int>(r) + 1;
        if (answer_rank[i] == kNever) {
          for (const std::string& a : answers) {
            if (contains_tokens(s.text, a)) {
              answer_rank[i] = rank;
              break;
            }
          }
        }
        if (gold_rank[i] == kNever && !q.gold_passage_id.empty() && s.doc_id == q.gold_passage_id) {
          gold_rank[i] = rank;
        }
      }
    }
  }

  RetrievalReport report;
  report.n = static_cast<int64_t>(questions.size());
  for (const Question& q : questions) report.n_with_gold += !q.gold_passage_id.empty();
  for (int k : ks) {
    int64_t a = 0, g = 0;
    for (size_t i = 0; i < questions.size(); ++i) {
      a += answer_rank[i] <= k;
      g += gold_rank[i] <= k;
    }
    report.answer_in_top[k] = report.n > 0 ? static_cast<double>(a) / report.n : 0.0;
    if (report.n_with_gold > 0) report.gold_in_top[k] = static_cast<double>(g) / report.n_with_gold;
  }
  return report;
}

json RetrievalReport::to_json() const {
  auto by_k = [](const std::map<int, double>& m) {
    json o = json::object();
    for (const auto& [k, v] : m) o[std::to_string(k)] = v;
    return o;
  };
  json j = {{"n", n}, {"answer_in_top", by_k(answer_in_top)}};
  if (n_with_gold > 0) j["gold_in_top"] = by_k(gold_in_top);
  return j;
}

std::string RetrievalReport::to_markdown() const {
  const bool gold = n_with_gold > 0;
  std::string s = fmt::format("{} questions{}\n\n", n,
                              gold ? fmt::format(" ({} with a gold passage)", n_with_gold) : "");
  s += gold ? "| k | answer in top-k | gold in top-k |\n|---:|---:|---:|\n"
            : "| k | answer in top-k |\n|---:|---:|\n";
  for (const auto& [k, v] : answer_in_top) {
    s += fmt::format("| {} | {:.1f}% |", k, 100.0 * v);
    if (gold) {
      auto it = gold_in_top.find(k);
      s += fmt::format(" {:.1f}% |", it == gold_in_top.end() ? 0.0 : 100.0 * it->second);
    }
    s += '\n';
  }
  return s;
}

}  // namespace kvrag
