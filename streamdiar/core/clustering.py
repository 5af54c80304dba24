"""Incremental clustering of local speakers into global speakers.

Every few windows, a bounded buffer of recent speaker vectors is re-clustered with spectral
clustering (number of speakers from the eigenvalues of the affinity's Laplacian), and the
clusters are mapped onto the global labels the buffer already carried, so that labels stay
stable. Windows in between take the nearest speaker of the last re-clustering.
Speakers who left the buffer live on as one running sum each; a cluster that matches none of
the buffer's labels but lies close to a speaker's whole history (that sum and their buffered
vectors) gets that speaker's label back.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

LocalKey = tuple[int, int]  # (window index, local speaker)


def _normalize(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)


def spectral_labels(
    vectors: np.ndarray,
    max_speakers: int,
    eigen_threshold: float,
    keep: float = 0.3,
    min_neighbours: int = 12,
) -> np.ndarray:
    """Cluster unit vectors (n, dim) into an estimated number of speakers; labels (n,).

    The affinity is the cosine similarity, each row pruned to its `keep` strongest entries
    (at least `min_neighbours`, so that a short buffer does not fall apart into fragments)
    and symmetrised. The number of speakers is the number of eigenvalues of the normalised
    Laplacian below `eigen_threshold` (one per well-separated group).
    """
    n = len(vectors)
    if n < 3:
        return np.zeros(n, dtype=int)
    affinity = np.clip(vectors @ vectors.T, 0.0, 1.0)  # (n, n)
    strongest = min(n, max(min_neighbours, int(keep * n)))
    cutoff = np.sort(affinity, axis=1)[:, -strongest][:, None]
    affinity = np.where(affinity >= cutoff, affinity, 0.0)
    affinity = (affinity + affinity.T) / 2
    degree = np.maximum(affinity.sum(axis=1), 1e-12)
    laplacian = np.eye(n) - affinity / np.sqrt(np.outer(degree, degree))
    values, vectors_ = np.linalg.eigh(laplacian)
    k = int(np.clip(np.sum(values < eigen_threshold), 1, min(max_speakers, n)))
    if k == 1:
        return np.zeros(n, dtype=int)
    return _kmeans(_normalize(vectors_[:, :k]), k)


def _kmeans(points: np.ndarray, k: int, inits: int = 5) -> np.ndarray:
    """Labels (n,) of the best of `inits` seeded k-means++ runs on points (n, dim) float64.

    The runs are scipy's `kmeans2(points, k, minit="++", seed=seed, missing="raise")` for
    seed in range(inits), as of scipy 1.17, all side by side: the same draws of a legacy
    RandomState(seed), the same arithmetic in the same order, hence the same labels bit for bit
    (tests/test_kmeans.py). kmeans2 itself costs 0.5-1 ms a run on arrays this small, nearly
    all per-call overhead (input checks, seeding a RandomState, ten `vq` calls), which made it
    most of an hour's stitching. A run in which a cluster comes out empty fails (kmeans2
    raises); zeros if all fail.
    """
    n, dim = points.shape
    columns = np.ascontiguousarray(points.T)  # (dim, n)
    runs = np.arange(inits)[:, None]  # (inits, 1)
    first, uniforms = _kpp_draws(n, k, inits)  # (inits,), (inits, k - 1)
    # 0/0 where all points lie on centres (scipy then picks index 0, as does the count below)
    # or where a cluster is empty (that run has failed)
    with np.errstate(invalid="ignore"):
        chosen = np.empty((inits, k), dtype=int)  # k-means++ (scipy's _kpp): centres' indices
        chosen[:, 0] = first
        nearest = _sq_distances(columns, first)  # (inits, n) to the nearest centre so far
        for i in range(1, k):
            cumulative = np.cumsum(nearest / nearest.sum(axis=1, keepdims=True), axis=1)
            chosen[:, i] = (cumulative < uniforms[:, i - 1 : i]).sum(axis=1)  # searchsorted
            nearest = np.minimum(nearest, _sq_distances(columns, chosen[:, i]))
        centroids = points[chosen].transpose(0, 2, 1).copy()  # (inits, dim, k)
        # One bincount adds each run's members into their cluster's column, dims then a count,
        # in their order, as scipy's update step does: at slot (run, dim or count, label).
        slots = ((runs * (dim + 1))[:, :, None] + np.arange(dim + 1)) * k  # (inits, 1, dim + 1)
        weights = np.ones((inits, n, dim + 1))
        weights[:, :, :dim] = points
        weights = weights.ravel()
        labels = np.zeros(0, dtype=int)  # none yet
        sizes: list[np.ndarray] = []  # members per cluster (inits, k) after each iteration
        # Lloyd's: kmeans2's 10 iterations, stopping early once no label changes, as from
        # there on each iteration would repeat the last one exactly
        for _ in range(10):
            labels, previous = _nearest(points, columns, centroids), labels  # (inits, n)
            if np.array_equal(labels, previous):
                break
            sums = np.bincount((labels[:, :, None] + slots).ravel(), weights, slots.size * k)
            sums = sums.reshape(inits, dim + 1, k)
            sizes.append(sums[:, dim])  # (inits, k)
            centroids = sums[:, :dim] / sums[:, dim:]
    failed = (np.array(sizes) == 0).any(axis=(0, 2))  # (inits,)
    squares = (points - centroids.transpose(0, 2, 1)[runs, labels]) ** 2  # (inits, n, dim)
    best, best_inertia = np.zeros(n, dtype=int), np.inf
    for run in np.flatnonzero(~failed):
        inertia = float(squares[run].sum())
        if inertia < best_inertia:
            best, best_inertia = labels[run], inertia
    return best


@functools.cache
def _kpp_draws(n: int, k: int, inits: int) -> tuple[np.ndarray, np.ndarray]:
    """What scipy's k-means++ draws from RandomState(seed) for seed in range(inits): the
    first centre's index (inits,) and one uniform per further centre (inits, k - 1).
    Cached (one entry per buffer length and number of speakers): seeding a RandomState costs
    ~0.2 ms, five of them several times the rest of `_kmeans`."""
    rngs = [np.random.RandomState(seed) for seed in range(inits)]
    first = np.array([rng.randint(n) for rng in rngs])
    return first, np.array([rng.uniform(size=k - 1) for rng in rngs])


def _sq_distances(columns: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Squared distances (m, n) from points `index` (m,) to all points, columns (dim, n).

    Summed over the dims in order along axis 0, as scipy's C loops add them (numpy would sum
    a last axis pairwise, rounding differently)."""
    return ((columns[:, None, :] - columns[:, index, None]) ** 2).sum(axis=0)


def _nearest(points: np.ndarray, columns: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index (runs, n) of each point's nearest centroid, centroids (runs, dim, k), the first
    of equals, as scipy's `vq`: direct differences under 5 dims, otherwise |x|^2 - 2 x.c + |c|^2
    with x.c from BLAS (vq has dgemm scale it by -2, which is exact)."""
    if len(columns) < 5:
        distances = ((centroids[:, :, None, :] - columns[:, :, None]) ** 2).sum(axis=1)
    else:
        squares = (columns**2).sum(axis=0)[:, None]  # (n, 1)
        distances = (-2 * (points @ centroids) + squares) + (centroids**2).sum(axis=1)[:, None]
    return distances.argmin(axis=2)  # distances (runs, n, k)


@dataclass
class Assignment:
    """Global labels for one window's local speakers (-1 where inactive or not yet known), and
    new labels for earlier local speakers whose cluster changed."""

    labels: np.ndarray  # (K,) int
    relabels: dict[LocalKey, int] = field(default_factory=dict)


class OnlineClustering:
    """Maps each window's local speakers onto global speakers, one window at a time.

    Memory: `buffer_size` recent vectors and one running sum per speaker. Clusters closer
    than `merge_distance` are merged, and a cluster becomes a new speaker only with at least
    `min_evidence` members (strong, repeated evidence), except the stream's first speaker;
    smaller clusters join their nearest speaker: splitting one voice costs more than merging
    two. Two local speakers of one window never share a label (`_separate_window_mates`).
    """

    def __init__(
        self,
        buffer_size: int = 120,
        eigen_threshold: float = 0.2,
        min_evidence: int = 6,
        return_distance: float = 0.25,
        merge_distance: float = 0.1,
        max_speakers: int = 20,
        recluster_every: int = 1,
        warm_up_windows: int = 60,
    ) -> None:
        self.buffer_size = buffer_size
        self.eigen_threshold = eigen_threshold
        self.min_evidence = min_evidence
        self.return_distance = return_distance
        self.merge_distance = merge_distance
        self.max_speakers = max_speakers
        self.recluster_every = recluster_every
        self.warm_up_windows = warm_up_windows
        self._since_recluster = 0  # windows assigned since the buffer was last re-clustered
        # speakers of the last re-clustering: labels (s,) and unit centroids (s, dim) of their
        # buffered vectors, for the windows until the next one
        self._centroid_labels = np.zeros(0, dtype=int)
        self._centroids = np.zeros((0, 0))
        self._keys: deque[LocalKey] = deque()
        self._vectors: deque[np.ndarray] = deque()  # (dim,) unit vectors, aligned with _keys
        self._labels: dict[LocalKey, int] = {}  # current label of each buffered key
        self._sums: dict[int, np.ndarray] = {}  # label -> (dim,) sum of vectors that left

    @classmethod
    def for_step(cls, step: float, **settings: float) -> "OnlineClustering":
        """Settings counted in vectors or windows, for windows `step` s apart: a buffer of the
        last 30 s (at least 30 vectors: windows several seconds apart would leave too few to
        tell voices apart), 1.5 s of evidence for a new speaker, a re-clustering every 1.2 s,
        and 30 s of warm-up before a collision of window-mates needs distance to mint a
        speaker."""
        return cls(
            buffer_size=max(30, round(30.0 / step)),
            warm_up_windows=round(30.0 / step),
            min_evidence=max(2, round(1.5 / step)),
            recluster_every=max(1, round(1.2 / step)),
            **settings,
        )

    @property
    def num_speakers(self) -> int:
        return len(set(self._labels.values()) - {-1} | set(self._sums))

    def assign(self, window_index: int, embeddings: np.ndarray, active: np.ndarray) -> Assignment:
        """Labels for the local speakers of window `window_index`.

        embeddings: (K, dim); active: (K,) bool.
        """
        labels = np.full(len(active), -1, dtype=int)
        local = np.flatnonzero(active)
        if len(local) == 0:
            return Assignment(labels)
        vectors = _normalize(embeddings[local].astype(np.float64))  # (active, dim)
        for k, vector in zip(local, vectors):
            self._remember((window_index, int(k)), vector)
        self._since_recluster += 1
        if self._since_recluster < self.recluster_every and len(self._centroid_labels):
            labels[local] = self._nearest(vectors)
            for k, label in zip(local, labels[local]):
                self._labels[(window_index, int(k))] = int(label)
            return Assignment(labels)
        self._since_recluster = 0
        previous = dict(self._labels)
        self._labels = self._recluster()
        sums = self._buffer_sums()
        self._centroid_labels = np.fromiter(sums, dtype=int, count=len(sums))
        self._centroids = _normalize(np.stack(list(sums.values()))) if sums else np.zeros((0, 0))
        for k in local:
            labels[k] = self._labels[(window_index, int(k))]
        relabels = {
            key: label
            for key, label in self._labels.items()
            if key[0] != window_index and previous.get(key) != label
        }
        return Assignment(labels, relabels)

    def _nearest(self, vectors: np.ndarray) -> np.ndarray:
        """Labels (active,) of the closest buffer centroids for unit vectors (active, dim),
        one speaker each (cannot-link); -1 for vectors left without one. Used between two
        re-clusterings, which may relabel them."""
        labels = np.full(len(vectors), -1, dtype=int)
        rows, cols = linear_sum_assignment(-(vectors @ self._centroids.T))
        labels[rows] = self._centroid_labels[cols]
        return labels

    def _buffer_sums(self) -> dict[int, np.ndarray]:
        """label -> (dim,) sum of the buffered vectors that carry it."""
        sums: dict[int, np.ndarray] = {}
        for key, vector in zip(self._keys, self._vectors):
            label = self._labels[key]
            if label >= 0:
                sums[label] = sums.get(label, 0.0) + vector
        return sums

    def _remember(self, key: LocalKey, vector: np.ndarray) -> None:
        self._keys.append(key)
        self._vectors.append(vector)
        self._labels[key] = -1
        if len(self._keys) > self.buffer_size:
            old_key, old_vector = self._keys.popleft(), self._vectors.popleft()
            label = self._labels.pop(old_key)
            if label >= 0:
                self._sums[label] = self._sums.get(label, 0.0) + old_vector

    def _recluster(self) -> dict[LocalKey, int]:
        keys = list(self._keys)
        vectors = np.stack(self._vectors)  # (n, dim)
        clusters = self._merge_close(
            vectors,
            spectral_labels(
                vectors,
                self.max_speakers,
                self.eigen_threshold,
                min_neighbours=2 * self.min_evidence,
            ),
        )
        sizes = np.bincount(clusters)
        centroids = _normalize(np.stack([vectors[clusters == c].sum(0) for c in range(len(sizes))]))
        # Clusters too small to be a speaker join the nearest large one. The largest is always a
        # speaker: the stream's first voice is one at once (without, its speech would be
        # committed unlabelled, missed, for as long as the backend's first windows last).
        large = np.flatnonzero(sizes >= self.min_evidence)
        if len(large) == 0:
            large = np.array([np.argmax(sizes)])
        nearest_large = large[np.argmax(centroids @ centroids[large].T, axis=1)]
        clusters = np.where(np.isin(clusters, large), clusters, nearest_large[clusters])
        mapping = self._map_clusters(keys, clusters, large, centroids)
        labels = {key: mapping[c] for key, c in zip(keys, clusters)}
        return self._separate_window_mates(keys, vectors, labels)

    def _merge_close(self, vectors: np.ndarray, clusters: np.ndarray) -> np.ndarray:
        """Clusters whose centroids lie within `merge_distance` are one voice: merge them,
        closest pair first. Returns labels renumbered 0..k-1."""
        while True:
            ids = np.unique(clusters)
            if len(ids) < 2:
                break
            centroids = _normalize(np.stack([vectors[clusters == c].sum(0) for c in ids]))
            distance = 1.0 - centroids @ centroids.T
            np.fill_diagonal(distance, np.inf)
            a, b = np.unravel_index(np.argmin(distance), distance.shape)
            if distance[a, b] >= self.merge_distance:
                break
            clusters = np.where(clusters == ids[b], ids[a], clusters)
        return np.unique(clusters, return_inverse=True)[1]

    def _map_clusters(
        self, keys: list[LocalKey], clusters: np.ndarray, large: np.ndarray, centroids: np.ndarray
    ) -> dict[int, int]:
        """Global label for each large cluster: the label most of its members already had,
        else the label of a speaker whose whole history (departed vectors and buffered ones)
        lies close, when no other cluster took it, else a new label."""
        known = sorted({self._labels[key] for key in keys} - {-1})
        overlap = np.zeros((len(large), len(known)))
        for key, c in zip(keys, clusters):
            label = self._labels[key]
            if label >= 0:
                overlap[np.searchsorted(large, c), known.index(label)] += 1
        mapping: dict[int, int] = {}
        rows, cols = linear_sum_assignment(-overlap) if known else ([], [])
        for row, col in zip(rows, cols):
            if overlap[row, col] > 0:
                mapping[int(large[row])] = known[col]
        next_label = max([*known, *self._sums, -1]) + 1
        # every vector that carried each label: departed, then buffered
        histories = dict(self._sums)
        for label, total in self._buffer_sums().items():
            histories[label] = histories.get(label, 0.0) + total
        for c in large:
            if c in mapping:
                continue
            free = [
                (1.0 - float(centroids[c] @ _normalize(total)), label)
                for label, total in histories.items()
                if label not in mapping.values()
            ]
            distance, label = min(free, default=(np.inf, -1))
            if distance < self.return_distance:
                mapping[int(c)] = label
            else:
                mapping[int(c)] = next_label
                next_label += 1
        return mapping

    def _separate_window_mates(
        self, keys: list[LocalKey], vectors: np.ndarray, labels: dict[LocalKey, int]
    ) -> dict[LocalKey, int]:
        """Enforce cannot-link: local speakers of one window sharing a label are split by an
        optimal one-to-one assignment to the speakers' centroids.

        A local speaker left without a speaker is a new one while the stream is younger than
        `warm_up_windows`: clustering has too few vectors to see a second voice, and a window
        holding two is the first evidence of it. Later it may take a departed speaker back,
        and is a new speaker only if it lies `return_distance` or more from every speaker
        known, else it stays unlabelled: in a long stream, minting a speaker at each such
        collision (a voice split in two by the segmentation, a vector blurred by overlap)
        multiplied the speakers (38 for 4 voices over 5 minutes, 3 with this rule).
        """
        by_window: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_window.setdefault(key[0], []).append(i)
        settled = max(by_window) >= self.warm_up_windows
        speakers: list[int] = []
        centroids: np.ndarray | None = None  # (speakers, dim), at the first collision
        for members in by_window.values():
            if len(members) < 2 or len({labels[keys[i]] for i in members}) == len(members):
                continue
            if centroids is None:
                speakers, centroids = self._speaker_centroids(keys, vectors, labels, settled)
            cost = 1.0 - vectors[members] @ centroids.T  # (members, speakers)
            fresh = np.full((len(members), len(members)), 2.0)  # new speakers cost the most
            rows, cols = linear_sum_assignment(np.hstack([cost, fresh]))
            next_label = max([*speakers, *self._sums, -1]) + 1
            for row, col in zip(rows, cols):
                key = keys[members[row]]
                if col < len(speakers):
                    labels[key] = speakers[col]
                elif settled and cost[row].min() < self.return_distance:
                    labels[key] = -1
                else:
                    labels[key] = next_label
                    next_label += 1
        return labels

    def _speaker_centroids(
        self, keys: list[LocalKey], vectors: np.ndarray, labels: dict[LocalKey, int], departed: bool
    ) -> tuple[list[int], np.ndarray]:
        """Labels and unit centroids (speakers, dim) of the buffer's speakers, with the
        departed speakers and their whole histories when `departed`."""
        totals: dict[int, np.ndarray] = dict(self._sums) if departed else {}
        for key, vector in zip(keys, vectors):
            if labels[key] >= 0:
                totals[labels[key]] = totals.get(labels[key], 0.0) + vector
        speakers = sorted(totals)
        return speakers, _normalize(np.stack([totals[label] for label in speakers]))
