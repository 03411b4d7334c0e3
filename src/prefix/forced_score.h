// How well the LLM, teacher-forced, predicts one answer: what `kvrag eval` reports as
// answer-token accuracy and what the groundedness signal compares (prefix/prefix_batch.h
// computes it from the same logits as the training loss). Torch-free.
#pragma once

namespace kvrag {

struct ForcedScore {
  double token_accuracy = 0;  // fraction of answer tokens (EOS included) that are the argmax
  double logprob = 0;         // mean log-probability per answer token: minus its cross-entropy
};

}  // namespace kvrag
