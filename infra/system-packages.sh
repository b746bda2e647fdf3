#!/usr/bin/env bash
# The Debian packages XGet's local stack and tests need, installed where missing (`make setup`
# and CI call this; nothing else installs system packages):
#   chromium        Playwright drives it for password logins and the console tests
#                   (`playwright install` cannot download on this network)
#   docker-compose  validates docker-compose.yml without a Docker engine (1.29 from Debian)
#   nodejs, npm     build the web console (web/)
# Without root or sudo it cannot install: it names what is missing and exits 1, at once.
set -euo pipefail

need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo"
  else
    echo "missing system packages: ${need[*]}" >&2
    echo "install them as root:  apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${need[*]} (no apt-get here: install them with your package manager)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
for cmd in chromium docker-compose node npm; do
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "system package for '$cmd' did not install: see apt-get's output above" >&2
    exit 1
  fi
done
