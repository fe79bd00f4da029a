"""Pure aggregation rules over named tensors (no state, no transport).

Each rule takes a list of client results and returns one set of named float32 tensors. The rules work on
whatever they are given (parameters or deltas); strategies pass deltas ``w_k - w_global`` so that
clipping and noise have a meaning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from hrc_fl.federated.core.update import NDArrays, difference, global_norm


def _names(results: Sequence[Mapping[str, np.ndarray]]) -> list[str]:
    if not results:
        raise ValueError("nothing to aggregate: empty list of results")
    names = list(results[0])
    for result in results[1:]:
        if set(result) != set(names):
            raise ValueError("results hold different tensor names")
    return names


def weighted_average(results: Sequence[tuple[Mapping[str, np.ndarray], int]]) -> NDArrays:
    """FedAvg: sum_k n_k * x_k / sum_k n_k per coordinate (McMahan et al. 2017, AISTATS).

    ``results`` is a list of (tensors, num_samples). Raises ValueError when the total weight is not > 0.
    """
    names = _names([tensors for tensors, _ in results])
    weights = np.array([float(n) for _, n in results], np.float64)
    if np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"sample weights must be >= 0 with a positive sum, got {weights.tolist()}")
    weights = weights / weights.sum()
    out: NDArrays = {}
    for name in names:
        acc = np.zeros(np.shape(results[0][0][name]), np.float64)
        for (tensors, _), weight in zip(results, weights, strict=True):
            acc += weight * np.asarray(tensors[name], np.float64)
        out[name] = acc.astype(np.float32)
    return out


def coordinate_median(results: Sequence[Mapping[str, np.ndarray]]) -> NDArrays:
    """Coordinate-wise median (Yin et al. 2018, "Byzantine-robust distributed learning", ICML).

    Tolerates up to half of the clients sending arbitrary values, per coordinate.
    """
    names = _names(results)
    return {name: np.median(np.stack([np.asarray(r[name], np.float32) for r in results]), axis=0)
            .astype(np.float32) for name in names}


def trim_count(count: int, trim_fraction: float) -> int:
    """Values dropped per side and coordinate by :func:`trimmed_mean` of ``count`` results."""
    return math.floor(trim_fraction * count)


def trimmed_mean(results: Sequence[Mapping[str, np.ndarray]], *, trim_fraction: float) -> NDArrays:
    """Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate drop the ``floor(beta * n)`` largest
    and smallest values and average the rest. ``trim_fraction`` beta is in [0, 0.5).
    """
    if not 0.0 <= trim_fraction < 0.5:
        raise ValueError(f"trim_fraction must be in [0, 0.5), got {trim_fraction}")
    names = _names(results)
    count = len(results)
    trim = trim_count(count, trim_fraction)
    out: NDArrays = {}
    for name in names:
        stacked = np.sort(np.stack([np.asarray(r[name], np.float32) for r in results]), axis=0)
        out[name] = stacked[trim:count - trim].mean(axis=0).astype(np.float32)
    return out


def median_anchored_mean(results: Sequence[Mapping[str, np.ndarray]], *, max_attackers: int
                         ) -> tuple[NDArrays, list[int]]:
    """Mean of the results nearest the coordinate median: drop the ``max_attackers`` f results farthest
    (joint L2 distance over all tensors) from the coordinate median (:func:`coordinate_median`), average the
    other n - f with equal weights. Returns (mean, indices of the kept results in input order).

    Needs n >= 2f + 1 (an honest majority, so the median is anchored by honest values; ValueError
    otherwise). Ties in distance keep the earlier result. The Multi-Krum / centred-clipping idea with the
    coordinate median as the centre (Blanchard et al. 2017; Karimireddy et al. 2021): an update far from
    the honest majority (sign-flipped, scaled) is removed whole instead of pulling every coordinate.
    """
    if max_attackers < 0:
        raise ValueError(f"max_attackers must be >= 0, got {max_attackers}")
    if len(results) < 2 * max_attackers + 1:
        raise ValueError(f"{len(results)} results cannot outvote {max_attackers} attacker(s): need "
                         f"{2 * max_attackers + 1}")
    centre = coordinate_median(results)
    distances = [global_norm(difference(r, centre)) for r in results]
    kept = sorted(np.argsort(np.asarray(distances), kind="stable")[:len(results) - max_attackers].tolist())
    names = _names(results)
    return ({name: np.mean(np.stack([np.asarray(results[k][name], np.float64) for k in kept]), axis=0)
             .astype(np.float32) for name in names}, kept)


def clip_to_norm(tensors: Mapping[str, np.ndarray], max_norm: float) -> tuple[NDArrays, float]:
    """Scale all tensors together so that their joint L2 norm is at most ``max_norm``.

    Returns (clipped tensors, factor applied in (0, 1]). Used for update-norm clipping (Sun et al. 2019,
    "Can you really backdoor FL?") and for client-level DP (McMahan et al. 2018).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    norm = global_norm(tensors)
    factor = 1.0 if norm <= max_norm else max_norm / norm
    return {name: (np.asarray(v, np.float32) * np.float32(factor)) for name, v in tensors.items()}, factor


def validate_tensors(tensors: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> str | None:
    """Why ``tensors`` cannot be aggregated against ``reference``, or None when it can.

    Checks: same names, same shapes, numeric dtype, every value finite.
    """
    missing = sorted(set(reference) - set(tensors))
    extra = sorted(set(tensors) - set(reference))
    if missing:
        return f"missing tensors: {missing[:3]}"
    if extra:
        return f"unexpected tensors: {extra[:3]}"
    for name, ref in reference.items():
        value = np.asarray(tensors[name])
        if value.shape != np.shape(ref):
            return f"wrong shape for {name}: {value.shape} != {np.shape(ref)}"
        if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
            return f"non-numeric dtype for {name}: {value.dtype}"
        if not np.all(np.isfinite(value)):
            return f"non-finite values in {name}"
    return None
