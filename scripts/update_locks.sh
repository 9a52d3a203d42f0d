#!/usr/bin/env bash
# Re-resolve the dependency sets and rewrite the locks that `make setup` installs exactly:
#   constraints.txt     pip freeze of a fresh venv with edgekit[all] (pins from pyproject.toml)
#   runtime/js/package-lock.json  npm's lock for runtime/js/package.json (shipped in the wheel)
# Review the diff and run `make test` before committing. Needs the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3.11 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --disable-pip-version-check -e '.[all]'
"$tmp/venv/bin/pip" check
"$tmp/venv/bin/pip" freeze --all --exclude pip --exclude edgekit | grep -v '^-e' > "$tmp/constraints.txt"
mv "$tmp/constraints.txt" constraints.txt
(cd runtime/js && npm install --package-lock-only --no-audit --no-fund)
echo "updated constraints.txt and runtime/js/package-lock.json: review 'git diff', then make test"
