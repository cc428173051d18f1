#!/usr/bin/env bash
# Obtains a real Ollama binary for the end-to-end test tier, built offline from the Go module
# proxy (v0.11.4 is the last release whose module zip builds without a network) and cached outside
# the repository. Starting and stopping the server is left to tests/support/real_ollama.ts.
#
#   scripts/real-ollama.sh build   build (or reuse) the binary and print its path
#   scripts/real-ollama.sh path    print the binary's path, exit 1 if there is none
#
# OLLAMA_BIN=/path/to/ollama uses an existing binary instead of the cache.
set -euo pipefail

version="v0.11.4"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/foreman/ollama-${version}"
cached_bin="${cache_dir}/ollama"

fail() {
  echo "real-ollama: $*" >&2
  exit 1
}

# Prints the usable binary, or nothing.
find_bin() {
  if [[ -n "${OLLAMA_BIN:-}" ]]; then
    [[ -x "${OLLAMA_BIN}" ]] || fail "OLLAMA_BIN=${OLLAMA_BIN} is not an executable file"
    echo "${OLLAMA_BIN}"
  elif [[ -x "${cached_bin}" ]]; then
    echo "${cached_bin}"
  fi
}

cmd_path() {
  local bin
  bin="$(find_bin)"
  [[ -n "${bin}" ]] || fail "no Ollama binary at ${cached_bin} (run: scripts/real-ollama.sh build)"
  echo "${bin}"
}

cmd_build() {
  local bin
  bin="$(find_bin)"
  if [[ -n "${bin}" ]]; then
    echo "${bin}"
    return
  fi
  command -v go > /dev/null || fail "cannot build Ollama ${version}: 'go' is not on PATH (Go >= 1.24 needed)"
  command -v g++ > /dev/null || fail "cannot build Ollama ${version}: 'g++' is not on PATH (cgo needs gcc/g++)"
  mkdir -p "${cache_dir}"
  local log="${cache_dir}/build.log"
  echo "real-ollama: building Ollama ${version} into ${cache_dir} (about 3-6 min on 2 cores; log: ${log})" >&2
  # Build into a temporary GOBIN so a half-written binary is never taken for a finished one.
  local tmp_bin
  tmp_bin="$(mktemp -d "${cache_dir}/gobin.XXXXXX")"
  # go install does not stamp the version (it would report 0.0.0); releases set it by -X.
  if ! GOBIN="${tmp_bin}" CGO_ENABLED=1 go install \
    -ldflags "-X github.com/ollama/ollama/version.Version=${version#v}" \
    "github.com/ollama/ollama@${version}" > "${log}" 2>&1; then
    rm -rf "${tmp_bin}"
    fail "cannot build Ollama ${version}: $(grep -m1 -iE 'error|fatal|cannot' "${log}" || tail -n1 "${log}") (see ${log})"
  fi
  mv "${tmp_bin}/ollama" "${cached_bin}"
  rm -rf "${tmp_bin}"
  echo "${cached_bin}"
}

case "${1:-}" in
  build) cmd_build ;;
  path) cmd_path ;;
  *)
    echo "usage: scripts/real-ollama.sh build|path" >&2
    exit 2
    ;;
esac
