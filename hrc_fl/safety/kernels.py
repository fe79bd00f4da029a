"""Compiled inner loops of the safety step (numba, no Python objects): keypoint checks, DH kinematics of
the robot capsules, the robot's largest point displacement and the keypoint-capsule distances.

All arrays are float64 and C-contiguous, in the robot base frame (``base_link``, metres). The signatures
are explicit, so every kernel is compiled (or loaded from numba's on-disk cache next to this module) when
this module is imported, i.e. at node start, never inside a safety cycle; an argument of another type or
layout raises TypeError instead of compiling. Callers in :mod:`hrc_fl.safety.geometry` convert first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

_FLOAT64 = np.dtype(np.float64)


def kernel_array(values: Any) -> np.ndarray:
    """``values`` in the form the kernels take: a float64 ndarray in C order (``values`` itself when it
    is one already: the identity checks are the cheap part of a cycle, numpy's coercion is not)."""
    if type(values) is np.ndarray and values.dtype is _FLOAT64 and values.flags.c_contiguous:
        return values
    return np.ascontiguousarray(values, dtype=np.float64)


#: :func:`check_keypoints` status codes.
KEYPOINTS_OK, KEYPOINTS_INFINITE, KEYPOINTS_FAR = 0, 1, 2

#: Columns of the DH table :func:`dh_segments` takes, one row per joint.
DH_OFFSET, DH_A, DH_D, DH_COS_ALPHA, DH_SIN_ALPHA = range(5)


def _compiled(signature: str) -> Callable[[Callable[..., Any]], Any]:
    """Eager njit with the on-disk cache; without it where numba finds no writable cache location (a
    read-only install): then the kernels compile at import on every start, which is slower, not wrong."""
    def decorate(func: Callable[..., Any]) -> Any:
        try:
            return njit(signature, cache=True, nogil=True)(func)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(signature, cache=False, nogil=True)(func)
    return decorate


@_compiled("Tuple((int64, float64, float64[:, ::1]))(float64[:, ::1], float64)")
def check_keypoints(points: np.ndarray, range_sq_m2: float) -> tuple[int, float, np.ndarray]:
    """Working-range check of keypoints (K,3): (status, squared distance m^2 of the farthest known keypoint
    from the origin, the known keypoints). Rows with a NaN coordinate are unknown and dropped (the result
    is ``points`` itself when none is); any infinite coordinate, also beside a NaN, is
    ``KEYPOINTS_INFINITE``; a known keypoint beyond the range (or whose squared norm overflows) is
    ``KEYPOINTS_FAR``."""
    k = points.shape[0]
    n_known = 0
    far_sq = 0.0
    infinite = False
    for i in range(k):
        x, y, z = points[i, 0], points[i, 1], points[i, 2]
        if math.isinf(x) or math.isinf(y) or math.isinf(z):
            infinite = True
        sq = x * x + y * y + z * z
        if not math.isnan(sq):
            n_known += 1
            if sq > far_sq:
                far_sq = sq
    if infinite:
        return KEYPOINTS_INFINITE, math.inf, points[:0]
    if not far_sq <= range_sq_m2:
        return KEYPOINTS_FAR, far_sq, points[:0]
    if n_known == k:
        return KEYPOINTS_OK, far_sq, points
    known = np.empty((n_known, 3))
    j = 0
    for i in range(k):
        x, y, z = points[i, 0], points[i, 1], points[i, 2]
        if not math.isnan(x * x + y * y + z * z):
            known[j, 0], known[j, 1], known[j, 2] = x, y, z
            j += 1
    return KEYPOINTS_OK, far_sq, known


@_compiled("Tuple((float64[:, ::1], float64[:, ::1]))(float64[::1], float64[:, ::1])")
def dh_frames(q_rad: np.ndarray, dh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origins (n+1,3) of frames 0..n of a standard DH chain at joint positions ``q_rad`` (n,) and the
    flange rotation (3,3): T_i = Rz(q_i + offset_i) Tz(d_i) Tx(a_i) Rx(alpha_i), table rows
    [offset, a, d, cos alpha, sin alpha]. NaN everywhere when a joint position is not finite."""
    n = q_rad.shape[0]
    origins = np.zeros((n + 1, 3))
    rotation = np.empty((3, 3))
    for i in range(n):
        if not math.isfinite(q_rad[i]):
            origins[:] = math.nan
            rotation[:] = math.nan
            return origins, rotation
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0
    px = py = pz = 0.0
    for i in range(n):
        theta = q_rad[i] + dh[i, DH_OFFSET]
        a, d, ca, sa = dh[i, DH_A], dh[i, DH_D], dh[i, DH_COS_ALPHA], dh[i, DH_SIN_ALPHA]
        ct, st = math.cos(theta), math.sin(theta)
        # Rz(theta) Tz(d) Tx(a) Rx(alpha): translation (a ct, a st, d), rotation columns
        # (ct, st, 0), (-st ca, ct ca, sa), (st sa, -ct sa, ca).
        tx, ty = a * ct, a * st
        px += r00 * tx + r01 * ty + r02 * d
        py += r10 * tx + r11 * ty + r12 * d
        pz += r20 * tx + r21 * ty + r22 * d
        b0, b1, b2 = -st * ca, ct * ca, sa
        e0, e1, e2 = st * sa, -ct * sa, ca
        r00, r01, r02 = r00 * ct + r01 * st, r00 * b0 + r01 * b1 + r02 * b2, r00 * e0 + r01 * e1 + r02 * e2
        r10, r11, r12 = r10 * ct + r11 * st, r10 * b0 + r11 * b1 + r12 * b2, r10 * e0 + r11 * e1 + r12 * e2
        r20, r21, r22 = r20 * ct + r21 * st, r20 * b0 + r21 * b1 + r22 * b2, r20 * e0 + r21 * e1 + r22 * e2
        origins[i + 1, 0], origins[i + 1, 1], origins[i + 1, 2] = px, py, pz
    rotation[0, 0], rotation[0, 1], rotation[0, 2] = r00, r01, r02
    rotation[1, 0], rotation[1, 1], rotation[1, 2] = r10, r11, r12
    rotation[2, 0], rotation[2, 1], rotation[2, 2] = r20, r21, r22
    return origins, rotation


@_compiled("float64[:, :, ::1](float64[::1], float64[:, ::1], float64, float64[:, :, ::1])")
def dh_segments(q_rad: np.ndarray, dh: np.ndarray, tool_length_m: float, static: np.ndarray) -> np.ndarray:
    """Capsule segments (2, n+1+S, 3) [starts; ends] of a DH chain (:func:`dh_frames`) at ``q_rad``:
    link i from frame origin i to i+1, the tool from the flange along its +z by ``tool_length_m``, then
    the S fixed segments ``static`` (2,S,3). A (2,0,3) result: a joint position is not finite."""
    n, s = q_rad.shape[0], static.shape[1]
    origins, rotation = dh_frames(q_rad, dh)
    if math.isnan(rotation[0, 0]):
        return np.empty((2, 0, 3))
    out = np.empty((2, n + 1 + s, 3))
    for c in range(3):
        for i in range(n + 1):
            out[0, i, c] = origins[i, c]                 # link starts, then the flange (tool start)
        for i in range(n):
            out[1, i, c] = origins[i + 1, c]             # link ends
        out[1, n, c] = origins[n, c] + rotation[c, 2] * tool_length_m
        for j in range(s):
            out[0, n + 1 + j, c] = static[0, j, c]
            out[1, n + 1 + j, c] = static[1, j, c]
    return out


@_compiled("float64(float64[:, :, ::1], float64[:, :, ::1])")
def max_displacement_m(segments: np.ndarray, previous: np.ndarray) -> float:
    """Largest distance (m) between corresponding segment end points of two capsule sets (2,M,3)."""
    best = 0.0
    for e in range(2):
        for i in range(segments.shape[1]):
            dx = segments[e, i, 0] - previous[e, i, 0]
            dy = segments[e, i, 1] - previous[e, i, 1]
            dz = segments[e, i, 2] - previous[e, i, 2]
            sq = dx * dx + dy * dy + dz * dz
            if math.isnan(sq):  # as a maximum over numpy would give
                return math.nan
            if sq > best:
                best = sq
    return math.sqrt(best)


@_compiled("Tuple((float64[:, ::1], int64))(float64[:, ::1], float64[:, :, ::1], float64[::1])")
def capsule_distances(points: np.ndarray, segments: np.ndarray, radii_m: np.ndarray) -> tuple[np.ndarray, int]:
    """Surface distances (N,M) from keypoints (N,3) to capsules (segments (2,M,3), radii (M,)), negative
    inside, and the row-major index of their minimum (the first NaN if any, as numpy's argmin; -1 for
    N = 0). With a = start, u = end - start: t = clip((p - a).u / |u|^2, 0, 1) (0 for a zero-length
    capsule, a sphere) and distance |p - a - t u| - radius."""
    n, m = points.shape[0], segments.shape[1]
    # Coordinates as rows and distances per capsule (M,N): the inner loop runs over contiguous memory,
    # which the compiler vectorises (a third faster than the (N,M) order at 75 x 8).
    coords = np.empty((3, n))
    for i in range(n):
        coords[0, i], coords[1, i], coords[2, i] = points[i, 0], points[i, 1], points[i, 2]
    px, py, pz = coords[0], coords[1], coords[2]
    by_capsule = np.empty((m, n))
    for j in range(m):
        ax, ay, az = segments[0, j, 0], segments[0, j, 1], segments[0, j, 2]
        ux, uy, uz = segments[1, j, 0] - ax, segments[1, j, 1] - ay, segments[1, j, 2] - az
        length_sq = ux * ux + uy * uy + uz * uz
        inv = 1.0 / length_sq if length_sq > 0.0 else 0.0
        radius = radii_m[j]
        row = by_capsule[j]
        for i in range(n):
            wx, wy, wz = px[i] - ax, py[i] - ay, pz[i] - az
            # min/max without branches (a NaN t, from a NaN point, stays NaN)
            t = min(max((wx * ux + wy * uy + wz * uz) * inv, 0.0), 1.0)
            dx, dy, dz = wx - t * ux, wy - t * uy, wz - t * uz
            row[i] = math.sqrt(dx * dx + dy * dy + dz * dz) - radius
    # Back to (N,M), scanning in row-major order: the first minimum (ties), or the first NaN, as numpy's
    # argmin.
    dist = np.empty((n, m))
    best, best_index, nan_index = math.inf, -1, -1
    for i in range(n):
        for j in range(m):
            v = by_capsule[j, i]
            dist[i, j] = v
            if v < best:
                best, best_index = v, i * m + j
            elif nan_index < 0 and not v >= best:
                nan_index = i * m + j
    if nan_index >= 0:
        return dist, nan_index
    if best_index < 0 and n * m > 0:  # every distance +inf
        best_index = 0
    return dist, best_index
