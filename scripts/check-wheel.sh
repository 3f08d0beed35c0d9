#!/usr/bin/env bash
# Build the wheel, install it into a fresh virtual environment and run refsync from another
# directory: catches package data (mappings, migrations) left out of the wheel.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m venv "$work/build-env"
"$work/build-env/bin/pip" install -q build
"$work/build-env/bin/python" -m build --wheel --outdir "$work/dist" "$repo" >/dev/null
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$work"/dist/refsync-*.whl

cd "$work"
"$work/venv/bin/refsync" --version
# the example reads the sandbox's CA bundle, which `refsync sandbox` writes on first start;
# any readable bundle does for an offline check
SALESFORCE_CA_BUNDLE="$("$work/venv/bin/python" -c 'import certifi; print(certifi.where())')" \
    "$work/venv/bin/refsync" check -c "$repo/config.example.yaml"
"$work/venv/bin/python" - <<'PY'
from importlib.resources import files
import refsync.state
migrations = files(refsync.state).joinpath("migrations", "versions")
assert any(p.name.endswith(".py") for p in migrations.iterdir()), "migrations missing"
print("wheel contents OK")
PY
