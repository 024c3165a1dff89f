#!/usr/bin/env bash
# Test-only: installs localsendd (PyPI; a LocalSend v2 daemon and its control tool localsendctl,
# written outside this project) into a virtual environment at target/localsendd-venv, for the
# interoperability tests and benchmark of crates/ferry-localsend. Idempotent. localsendd makes
# its certificate with the openssl command, and the tests run it only inside network namespaces
# they create (iproute2).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/localsendd-venv
version=0.1.1
if [ -x "$venv/bin/localsendd" ] && "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('localsendd') == '$version'" 2>/dev/null; then
  exit 0
fi
command -v openssl >/dev/null || { echo "setup-localsend: openssl not found (Debian package openssl)" >&2; exit 1; }
mkdir -p target
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "localsendd==$version"
"$venv/bin/localsendd" --version
