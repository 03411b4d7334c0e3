// The synthetic corpus and random-weight encoder of the retrieval tests (tests/retrieval),
// compiled into this binary too: the answering tests build their index the same way.
#include "../retrieval/retrieval_fixture.cpp"
