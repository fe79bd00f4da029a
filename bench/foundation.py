"""Issue 1/6 figures: setup time (warm, optionally cold in a fresh clone) and import time of each
node's module in a fresh interpreter.

    .venv/bin/python bench/foundation.py [--quick] [--cold]

Prints a table (median and spread over repeats) and, as the last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ["camera", "hands", "pose", "wearable", "intention", "safety", "fl_client", "aggregator"]


def timed(cmd: list[str], cwd: Path = ROOT) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (< 1 min)")
    parser.add_argument("--cold", action="store_true", help="also time a cold setup in a fresh clone (minutes)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7

    rows: list[tuple[str, dict[str, float]]] = []
    rows.append(("interpreter baseline", summary([timed([sys.executable, "-c", "pass"]) for _ in range(repeats)])))
    import_s: dict[str, float] = {}
    for module in NODE_MODULES:
        name = f"hrc_fl.nodes.{module}"
        try:
            samples = [timed([sys.executable, "-c", f"import {name}"]) for _ in range(repeats)]
        except subprocess.CalledProcessError:
            rows.append((f"import {name}", {"median": float("nan"), "min": float("nan"), "max": float("nan")}))
            continue
        stats = summary(samples)
        import_s[module] = stats["median"]
        rows.append((f"import {name}", stats))
    warm = summary([timed(["bash", "scripts/setup.sh"]) for _ in range(2 if args.quick else 3)])
    rows.append(("setup (warm)", warm))
    cold_s = None
    if args.cold:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["git", "clone", "-q", str(ROOT), tmp], check=True)
            cold_s = timed(["bash", "scripts/setup.sh"], cwd=Path(tmp))
        rows.append(("setup (cold, fresh clone)", {"median": cold_s, "min": cold_s, "max": cold_s}))

    print(f"{'measurement':<36} {'median_s':>9} {'min_s':>8} {'max_s':>8}")
    for label, stats in rows:
        print(f"{label:<36} {stats['median']:>9.3f} {stats['min']:>8.3f} {stats['max']:>8.3f}")
    print(json.dumps({"setup_warm_s": round(warm["median"], 2),
                      "setup_cold_s": None if cold_s is None else round(cold_s, 1),
                      "import_s": {k: round(v, 3) for k, v in import_s.items()}}))


if __name__ == "__main__":
    main()
