#!/usr/bin/env bash
# System packages the project needs beyond PyPI, from Debian's archive:
#   npm       the Noto emoji sample set (npm package emoji-datasource-google)
#   chromium  the browser test of the search page (driven by Playwright)
# Installs only what is missing; needs root and apt-get, else says what to install.
set -euo pipefail
want=()
command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
if [ "${1:-}" = "--browser" ]; then
  command -v chromium >/dev/null 2>&1 || [ -n "${IMGSEARCH_CHROMIUM:-}" ] || want+=(chromium)
fi
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || want+=(python3-venv)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${want[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
else
  echo "please install these system packages first: ${want[*]}" >&2
  exit 1
fi
