#!/usr/bin/env bash
# Idempotent setup of everything hrc_fl needs, from the package registries only:
#   1. the virtual environment .venv/ with the pinned dependencies (requirements.txt + constraints.txt)
#   2. the interface package hrc_fl_msgs built from msg/ into that environment
#   3. hrc_fl registered in the ament prefix .venv/ (index marker, share/hrc_fl/, lib/hrc_fl/<node>) and
#      .venv/setup.bash, the one file to source for `ros2 run` / `ros2 launch` / ament_index_python
#   4. models and real data sets built into the git-ignored cache .cache/hrc_fl/ (hrc-fl setup-assets)
# Each step is skipped when its inputs are unchanged, so a second run takes seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
t0=$SECONDS

pick_python() {
  for candidate in "${HRC_FL_PYTHON:-}" python3.11 python3; do
    [[ -n "$candidate" ]] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "[setup] ERROR: Python 3.11 is required (the ROS 2, MediaPipe and FedML wheels are built for it)" >&2
  return 1
}

# pip prints a warning line for every local index folder that lacks a package; keep the log readable.
quiet_pip() { grep -v -e "is ignored: it is neither a file nor a directory" -e "^$" || true; }

deps_sum="$(cat requirements.txt constraints.txt setup.py setup.cfg | sha256sum | cut -d' ' -f1)"
deps_stamp="$venv/.hrc_fl_deps.sha256"
if [[ ! -x "$venv/bin/python" || ! -f "$deps_stamp" || "$(cat "$deps_stamp")" != "$deps_sum" ]]; then
  python="$(pick_python)"
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "[setup] creating virtual environment .venv"
    "$python" -m venv "$venv"
  fi
  echo "[setup] installing pinned dependencies (first run: a few minutes, several GB)"
  log="$venv/pip-install.log"
  if ! "$venv/bin/pip" install --disable-pip-version-check -r requirements.txt -c constraints.txt >"$log" 2>&1; then
    quiet_pip <"$log" | tail -n 20 >&2
    echo "[setup] ERROR: could not install the Python dependencies (see above; full log: $log)" >&2
    exit 1
  fi
  if ! "$venv/bin/pip" install --disable-pip-version-check --no-deps --no-build-isolation -e . >>"$log" 2>&1; then
    quiet_pip <"$log" | tail -n 20 >&2
    echo "[setup] ERROR: could not install hrc_fl itself (full log: $log)" >&2
    exit 1
  fi
  echo "$deps_sum" >"$deps_stamp"
fi

bash "$root/scripts/build_msgs.sh"

# pip gives console scripts in .venv/bin/ only; ROS 2 tools look in the ament prefix (same layout as colcon).
"$venv/bin/python" -m hrc_fl.ament_prefix --prefix "$venv"

"$venv/bin/hrc-fl" setup-assets
# The base intention model that seeds every workstation's model store (trained on the real data above).
"$venv/bin/hrc-fl" train-intention --if-missing
# The federation's CA and per-node TLS certificates (mutual TLS between workstations and aggregator).
"$venv/bin/hrc-fl" fl-certs --if-missing
# The safety kernels compile once into numba's cache (git-ignored __pycache__), so no node or test pays it.
t_jit=$SECONDS
"$venv/bin/python" -c "import hrc_fl.safety.kernels"
echo "[setup] safety kernels compiled or loaded from numba's cache in $((SECONDS - t_jit)) s"

echo "[setup] ready in $((SECONDS - t0)) s"
