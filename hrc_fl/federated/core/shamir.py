"""Shamir secret sharing (Shamir 1979) of 32-byte secrets over the prime field GF(2^521 - 1).

A secret is the constant term of a random polynomial of degree ``threshold - 1``; share ``x`` is the
polynomial at ``x`` (x = 1, 2, ...). Any ``threshold`` shares give the secret back by Lagrange
interpolation at 0; fewer reveal nothing about it. Coefficients come from the OS CSPRNG (``secrets``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence

#: the Mersenne prime 2^521 - 1: larger than any 32-byte secret
PRIME = (1 << 521) - 1
SHARE_BYTES = 66  # ceil(521 / 8)
SECRET_BYTES = 32


def split(secret: bytes, xs: Sequence[int], threshold: int) -> dict[int, bytes]:
    """Shares of ``secret`` (32 bytes) at the points ``xs`` (distinct, >= 1); any ``threshold`` recover it."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    if not 1 <= threshold <= len(xs):
        raise ValueError(f"threshold must be in [1, {len(xs)}], got {threshold}")
    if len(set(xs)) != len(xs) or min(xs) < 1:
        raise ValueError(f"share points must be distinct and >= 1, got {list(xs)}")
    coefficients = [int.from_bytes(secret, "big")] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)]
    shares = {}
    for x in xs:
        value = 0
        for coefficient in reversed(coefficients):  # Horner
            value = (value * x + coefficient) % PRIME
        shares[x] = value.to_bytes(SHARE_BYTES, "big")
    return shares


def parse_share(data: bytes) -> int:
    """A share's field element; ValueError when ``data`` is not one."""
    if len(data) != SHARE_BYTES:
        raise ValueError(f"a share must be {SHARE_BYTES} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    if value >= PRIME:
        raise ValueError("share value outside the field")
    return value


def combine(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """The secret from at least ``threshold`` shares (point -> share); ValueError with fewer."""
    if len(shares) < threshold:
        raise ValueError(f"{len(shares)} shares, {threshold} needed")
    points = sorted(shares)[:threshold]
    values = {x: parse_share(shares[x]) for x in points}
    secret = 0
    for x in points:
        numerator, denominator = 1, 1
        for other in points:
            if other != x:
                numerator = numerator * other % PRIME
                denominator = denominator * (other - x) % PRIME
        secret = (secret + values[x] * numerator * pow(denominator, -1, PRIME)) % PRIME
    if secret >= 1 << (8 * SECRET_BYTES):
        raise ValueError("shares do not combine to a 32-byte secret (inconsistent shares)")
    return secret.to_bytes(SECRET_BYTES, "big")
