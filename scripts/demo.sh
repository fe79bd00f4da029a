#!/usr/bin/env bash
# The main job: sets up what it needs (idempotent), then runs the plant demo on real replayed data.
# Arguments are passed to `hrc-fl demo` (e.g. --quick).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/hrc-fl demo "$@"
