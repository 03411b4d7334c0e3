// The prompt format and the answer's token ids (prefix/prompt.h).

#include <gtest/gtest.h>

#include "prefix/prompt.h"
#include "support/test_support.h"
#include "text/tokenizer.h"

namespace kvrag {
namespace {

TEST(Prompt, FormatsQuestionAndContextOnOneLineEach) {
  EXPECT_EQ(question_prompt("  who wrote\nit? "), "Question: who wrote it?\nAnswer:");
  EXPECT_EQ(context_prompt({{"T1", "a\nb"}, {"", "c"}}, "q"),
            "Context: T1: a b\nContext: c\nQuestion: q\nAnswer:");
  EXPECT_EQ(answer_target(" Paris \n"), " Paris");
}

// LLaMA's tokenizer adds a dummy prefix and keeps spaces: " Paris" alone would be "▁", "▁Paris".
// The answer's ids must be those that follow the prompt in running text.
TEST(Prompt, AnswerIdsAreThoseAfterThePromptWithLlamasTokenizer) {
  KVRAG_SHARED_PATH_OR_SKIP(path, "tokenizers/llama/tokenizer.model");
  const auto tok = load_tokenizer(path);
  const std::string prompt = question_prompt("what is the capital of france");
  for (const std::string answer : {"Paris", "the Director of National Intelligence", "1864–1942"}) {
    const auto ids = answer_token_ids(*tok, answer);
    const auto with = tok->encode(prompt + answer_target(answer), false);
    const auto without = tok->encode(prompt, false);
    ASSERT_EQ(with.size(), without.size() + ids.size()) << answer;
    EXPECT_TRUE(std::equal(ids.begin(), ids.end(), with.end() - ids.size())) << answer;
  }
  // Tokenized alone, " Paris" gains a lone "▁" (the dummy prefix before the space's own "▁").
  EXPECT_EQ(answer_token_ids(*tok, "Paris").size(), 1u);
  EXPECT_EQ(tok->encode(answer_target("Paris"), false).size(), 2u);
}

}  // namespace
}  // namespace kvrag
