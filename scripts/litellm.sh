#!/usr/bin/env bash
# Obtains LiteLLM's proxy (PyPI litellm[proxy], pinned) for the router tier (tests/router/), in a
# Python virtual environment cached outside the repository.
#
#   scripts/litellm.sh install   install (or reuse) it and print the litellm executable's path
#   scripts/litellm.sh path      print that path, exit 1 if it is not installed
#
# LITELLM_BIN=/path/to/litellm uses an existing installation instead.
set -euo pipefail

version="1.108.7"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/foreman/litellm-${version}"
cached_bin="${venv}/bin/litellm"
# Written last: a half-finished install (interrupted, disk full) is never taken for a good one.
marker="${venv}/.installed"

fail() {
  echo "litellm: $*" >&2
  exit 1
}

find_bin() {
  if [[ -n "${LITELLM_BIN:-}" ]]; then
    [[ -x "${LITELLM_BIN}" ]] || fail "LITELLM_BIN=${LITELLM_BIN} is not an executable file"
    echo "${LITELLM_BIN}"
  elif [[ -f "${marker}" && -x "${cached_bin}" ]]; then
    echo "${cached_bin}"
  fi
}

cmd_path() {
  local bin
  bin="$(find_bin)"
  [[ -n "${bin}" ]] || fail "no LiteLLM ${version} at ${venv} (run: scripts/litellm.sh install)"
  echo "${bin}"
}

cmd_install() {
  local bin
  bin="$(find_bin)"
  if [[ -n "${bin}" ]]; then
    echo "${bin}"
    return
  fi
  command -v python3 >/dev/null || fail "python3 is not installed"
  rm -rf "${venv}"
  mkdir -p "$(dirname "${venv}")"
  echo "litellm: installing litellm[proxy]==${version} into ${venv} (a few minutes)" >&2
  python3 -m venv "${venv}" >&2 || fail "python3 -m venv failed (Debian: apt-get install python3-venv)"
  # pip's own timeout bounds each download; the whole install is bounded too.
  timeout 900 "${venv}/bin/pip" install --quiet --disable-pip-version-check --timeout 60 \
    "litellm[proxy]==${version}" >&2 || fail "pip install litellm[proxy]==${version} failed"
  "${cached_bin}" --version >/dev/null 2>&1 || fail "${cached_bin} does not run"
  touch "${marker}"
  echo "${cached_bin}"
}

case "${1:-}" in
  install) cmd_install ;;
  path) cmd_path ;;
  *)
    echo "usage: scripts/litellm.sh install|path" >&2
    exit 2
    ;;
esac
