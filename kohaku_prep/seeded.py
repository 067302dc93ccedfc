"""Seeded orders that depend only on the seed and the keys: not on file order, machine or NumPy version.

Each key is ranked by SplitMix64 of (key xor a hash of the seed); sorting by rank is a uniform random
permutation for any practical purpose, and the same everywhere.
"""
from __future__ import annotations

import numpy as np

_MASK64 = 0xFFFFFFFFFFFFFFFF


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def rank_keys(keys: np.ndarray, seed: int) -> np.ndarray:
    seed_key = _splitmix64(np.array([seed & _MASK64], np.uint64))[0]
    return _splitmix64(keys.astype(np.uint64) ^ seed_key)


def derive_seed(seed: int, *labels: int) -> int:
    """A seed for one use of `seed` (an epoch, a stage), independent of the seed's other uses."""
    for label in labels:
        seed = int(rank_keys(np.array([label & _MASK64], np.uint64), seed)[0])
    return seed
