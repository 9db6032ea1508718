#!/usr/bin/env bash
# System packages the project needs beyond PyPI, from Debian's archive:
#   npm       the Noto emoji sample set (npm package emoji-datasource-google)
#   chromium  (--browser) the browser test of the search page (driven by Playwright)
#   java      (--java) a Java 17+ runtime for PySpark: the Spark indexing engine and its test
# Installs only what is missing; needs root and apt-get, else says what to install.
set -euo pipefail
want=()
command -v npm >/dev/null 2>&1 || want+=(nodejs npm)
for flag in "$@"; do
  case "$flag" in
    --browser) command -v chromium >/dev/null 2>&1 || [ -n "${IMGSEARCH_CHROMIUM:-}" ] || want+=(chromium) ;;
    --java) command -v java >/dev/null 2>&1 || want+=(java) ;;
    *) echo "unknown option: $flag (known: --browser, --java)" >&2; exit 2 ;;
  esac
done
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || want+=(python3-venv)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  packages=()
  for p in "${want[@]}"; do
    if [ "$p" = java ]; then  # Debian 12 has 17; later releases only newer ones, which PySpark also runs on
      p=default-jre-headless
      for candidate in openjdk-17-jre-headless openjdk-21-jre-headless; do
        if apt-cache show "$candidate" >/dev/null 2>&1; then p=$candidate; break; fi
      done
    fi
    packages+=("$p")
  done
  echo "installing system packages: ${packages[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
else
  printf 'please install these system packages first: %s\n' "${want[*]/java/openjdk-17-jre-headless}" >&2
  exit 1
fi
