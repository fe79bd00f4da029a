#!/usr/bin/env bash
# Builds the hrc_fl_msgs interface package from msg/ into the virtual environment with plain CMake
# (the environment is the ROS prefix). Idempotent: skipped when msg/ has not changed since the last build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
build="$root/.cache/hrc_fl/build/msgs"
stamp="$venv/.hrc_fl_msgs.sha256"
sum="$(cat "$root"/msg/CMakeLists.txt "$root"/msg/package.xml "$root"/msg/*.msg | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" && "${1:-}" != "--force" ]]; then
  exit 0
fi
echo "[setup] building interfaces (hrc_fl_msgs)"
export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export PATH="$venv/bin:$PATH"
log="$root/.cache/hrc_fl/build/msgs.log"
mkdir -p "$build"
if ! { cmake -S "$root/msg" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$venv/bin/python" \
       -DBUILD_TESTING=OFF && cmake --build "$build" -j2 && cmake --install "$build"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "[setup] ERROR: interface build failed; full log: $log" >&2
  exit 1
fi
echo "$sum" > "$stamp"
