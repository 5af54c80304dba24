"""The clustering's own k-means against scipy's kmeans2, which it replaced: same labels."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.cluster.vq import ClusterError, kmeans2

from streamdiar.core.clustering import _kmeans

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def scipy_kmeans(points: np.ndarray, k: int, inits: int = 5) -> tuple[np.ndarray, int]:
    """The replaced `_kmeans`, calling scipy as it did; also how many starts failed."""
    best, best_inertia, failed = np.zeros(len(points), dtype=int), np.inf, 0
    for seed in range(inits):
        try:
            with warnings.catch_warnings():  # 0/0 in its seeding when all points coincide
                warnings.simplefilter("ignore", RuntimeWarning)
                centroids, labels = kmeans2(points, k, minit="++", seed=seed, missing="raise")
        except ClusterError:
            failed += 1
            continue
        inertia = float(((points - centroids[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best, failed


def point_set(kind: str, n: int, k: int, seed: int) -> np.ndarray:
    """Unit vectors (n, k): spread at random, around a few centres, or repeats of a few."""
    rng = np.random.default_rng(seed)
    if kind == "spread":
        points = rng.normal(size=(n, k))
    elif kind == "clustered":
        centres = rng.normal(size=(int(rng.integers(1, k + 2)), k))
        noise = rng.choice([1e-6, 0.05, 0.3])
        points = centres[rng.integers(0, len(centres), n)] + noise * rng.normal(size=(n, k))
    else:  # "repeated": duplicates of a few points, at times fewer than k
        distinct = rng.normal(size=(int(rng.integers(1, n + 1)), k))
        points = distinct[rng.integers(0, len(distinct), n)]
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def assert_same_as_scipy(points: np.ndarray, k: int) -> int:
    expected, failed = scipy_kmeans(points, k)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = _kmeans(points, k)
    np.testing.assert_array_equal(labels, expected)
    return failed


@st.composite
def cases(draw):
    n = draw(st.integers(3, 120))
    k = draw(st.integers(2, min(20, n)))
    kind = draw(st.sampled_from(["spread", "clustered", "repeated"]))
    return point_set(kind, n, k, draw(st.integers(0, 2**32 - 1))), k


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_labels_are_scipy_kmeans2s(case):
    assert_same_as_scipy(*case)


def test_all_starts_failing_gives_zeros_as_before():
    points = point_set("repeated", 30, 2, 0)[:1].repeat(30, axis=0)  # one point, 30 times
    assert assert_same_as_scipy(points, 2) == 5
    np.testing.assert_array_equal(_kmeans(points, 2), np.zeros(30))


def test_some_starts_failing_keeps_the_best_of_the_others():
    assert assert_same_as_scipy(point_set("clustered", 32, 6, 943), 6) == 1
