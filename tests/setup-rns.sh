#!/usr/bin/env bash
# Installs the reference Reticulum stack (PyPI rns, pinned) into a virtual environment outside
# git, for the Reticulum and KISS interoperability tests (tests/tests/link_reticulum.rs) and
# for `--reticulum` in the binaries. Prints the interpreter path.
#
#   TENBIT_RNS_VENV  where to put it (default: target/rns-venv, ignored by git)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${TENBIT_RNS_VENV:-target/rns-venv}
want=1.5.7
mkdir -p "$(dirname "$venv")"
# Tests run in parallel and each may call this: one installs, the others wait on the lock and
# then find the finished environment (CI once failed with "File exists" from a second venv).
exec 9>"$venv.lock"
flock 9
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import RNS,sys; sys.exit(RNS.__version__ != '$want')" 2>/dev/null; then
  echo "$venv/bin/python"
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check "rns==$want" >&2
"$venv/bin/python" -c "import RNS; assert RNS.__version__ == '$want', RNS.__version__" >&2
echo "$venv/bin/python"
