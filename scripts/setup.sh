#!/usr/bin/env bash
# Installs what Ferry needs on Debian/Ubuntu (idempotent; quick when done). Rust comes from
# rustup (https://rustup.rs) and Node.js ≥ 20 must be on PATH.
#
#   scripts/setup.sh          to build and run the app (scripts/run.sh): the system packages
#                             the build links against (WebKitGTK, …) and the UI's npm packages
#   scripts/setup.sh --test   also what only the tests need (scripts/test.sh): iproute2 for the
#                             network-namespace tests, Xvfb, WebKitWebDriver, tauri-driver and
#                             Selenium for the desktop end-to-end test, ImageMagick for its
#                             pictures, cargo-fuzz for the fuzzers
set -euo pipefail
cd "$(dirname "$0")/.."
test_tools=false
case "${1:-}" in
  "") ;;
  --test) test_tools=true ;;
  *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
esac

# GStreamer's base and good plugins are what the web view plays audio and video with (WebKitGTK
# only recommends them).
packages=(build-essential pkg-config curl wget file
  libwebkit2gtk-4.1-dev libxdo-dev libssl-dev libayatana-appindicator3-dev librsvg2-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good)
$test_tools && packages+=(iproute2 iputils-ping xvfb xauth webkit2gtk-driver imagemagick python3-pip python3-venv openssl)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }
command -v npm >/dev/null || { echo "setup: npm not found; install Node.js 20 or newer" >&2; exit 1; }

# The UI's packages, as locked. (`npm install`, not `npm ci`: npm configured to omit resolved
# URLs leaves other platforms' optional packages out of the lock, which `npm ci` then refuses.)
if [ ! -d ui/node_modules ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  npm --prefix ui install --no-audit --no-fund --loglevel=error
fi

$test_tools || exit 0
# The WebDriver bridge for the desktop end-to-end test, and the fuzzer driver.
command -v tauri-driver >/dev/null || cargo install tauri-driver@2.1.0 --locked --quiet
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz@0.13.2 --locked --quiet
python3 -c "import selenium" 2>/dev/null || python3 -m pip install --quiet --disable-pip-version-check selenium 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages selenium

# Test only: localsendd, the independent LocalSend implementation the LocalSend tests run against.
bash scripts/setup-localsend.sh
