# The fuzz harnesses, fuzz/fuzz_NAME.cpp each: built with libFuzzer by fuzz/CMakeLists.txt and
# replayed over their kept inputs (fuzz/corpus/NAME) by the test suite (tests/fuzz).
set(KVRAG_FUZZ_HARNESSES
  safetensors
  npy
  config
  corpus_reader
  wordpiece
  sentencepiece
  server_request
)
