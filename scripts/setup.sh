#!/usr/bin/env bash
# Installs the Debian packages kvrag builds and tests with (idempotent: skips what is there)
# and configures a Release build in ./build.
#
#   scripts/setup.sh            the build, the tests, the benchmarks
#   scripts/setup.sh --fuzz     also clang and its libFuzzer runtime, for bench/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config
  libtorch-dev libfaiss-dev libopenblas-dev libomp-dev libdnnl-dev
  libsentencepiece-dev sentencepiece libicu-dev
  libsqlite3-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libcpp-httplib-dev
  libmicrohttpd-dev zlib1g-dev
  libopenmpi-dev openmpi-bin  # data-parallel training: mpirun -np N kvrag train-*
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-torch python3-numpy
  chromium  # headless, for the web page's browser test (tests/serve; skipped without it)
)

if [ "${1:-}" = "--fuzz" ]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

BUILD_TYPE=${BUILD_TYPE:-Release}
cmake -S . -B build -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >/dev/null
echo "setup: configured build/ ($BUILD_TYPE)"
