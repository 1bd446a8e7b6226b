"""t-SNE of originals and their reconstructions in one map, with measures of overlap.

A good codec's reconstructions land on top of their originals. Two numbers say how
much, so the picture is not the only evidence:
  * own-neighbour rate: the share of reconstructions whose nearest original is their
    own, in pixel space (where distances are real) and in the map;
  * kNN mixing: among each point's k nearest neighbours in the map, the share from the
    other set, divided by the share a perfect mix would give (1 = indistinguishable,
    0 = two separate clouds).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.neighbors import NearestNeighbors

from . import figures
from .autoencoders import squeeze_grey
from .section import Context, Figure, Section

TSNE_LEVEL = 0.95
NEIGHBOURS = 10
PCA_DIMS = 50  # t-SNE runs on the top principal components, as is usual for images


def own_neighbour_rate(originals: np.ndarray, reconstructions: np.ndarray) -> float:
    """Share of reconstructions whose nearest original (Euclidean) is their own."""
    nearest = NearestNeighbors(n_neighbors=1).fit(originals).kneighbors(reconstructions, return_distance=False)[:, 0]
    return float(np.mean(nearest == np.arange(len(originals))))


def knn_mixing(points: np.ndarray, is_second: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Other-set share among each point's k nearest neighbours, over what a perfect mix gives."""
    k = min(k, len(points) - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points, return_distance=False)[:, 1:]
    other = np.mean(is_second[idx] != is_second[:, None])
    n, m = int(np.sum(~is_second)), int(np.sum(is_second))
    expected = 2 * n * m / ((n + m) * (n + m - 1))  # chance that a random other point is of the other set
    return float(other / expected)


def tsne(ctx: Context) -> Section:
    level_result, decoded = ctx.shared["levels"][TSNE_LEVEL]
    n = min(ctx.budget.tsne_points, len(decoded))
    originals = squeeze_grey(ctx.inputs.test[:n]).reshape(n, -1).astype(np.float32) / 255.0
    recon = decoded[:n].reshape(n, -1).astype(np.float32) / 255.0
    joint = np.concatenate([originals, recon])
    dims = min(PCA_DIMS, joint.shape[1], len(joint))
    reduced = PCA(n_components=dims, random_state=ctx.budget.seed).fit_transform(joint)
    perplexity = float(min(30.0, (len(joint) - 1) / 3))
    embedded = TSNE(
        n_components=2, perplexity=perplexity, init="pca", random_state=ctx.budget.seed
    ).fit_transform(reduced)
    is_recon = np.arange(2 * n) >= n
    results: dict[str, Any] = {
        "points_per_set": n,
        "model": f"dense, {TSNE_LEVEL:.0%} compression (code {level_result['latent']})",
        "own_neighbour_rate_pixels": own_neighbour_rate(originals, recon),
        "own_neighbour_rate_map": own_neighbour_rate(embedded[:n], embedded[n:]),
        "knn_mixing": knn_mixing(embedded, is_recon),
        "neighbours": min(NEIGHBOURS, 2 * n - 1),
        "perplexity": perplexity,
        "embedding": {"originals": embedded[:n].round(3).tolist(), "reconstructions": embedded[n:].round(3).tolist()},
    }
    plot = figures.scatter(
        [
            figures.Series("originals", embedded[:n, 0], embedded[:n, 1], {"color": "tab:blue"}),
            figures.Series("reconstructions", embedded[n:, 0], embedded[n:, 1], {"color": "tab:red"}),
        ],
        f"t-SNE of {n} test images and their reconstructions",
    )
    return Section(
        "tsne",
        "t-SNE of originals and reconstructions",
        f"{n} test images (blue) and their reconstructions by the {results['model']} model (red), "
        f"embedded together by scikit-learn's t-SNE after PCA to {dims} dimensions.",
        results,
        figures=[Figure("tsne.png", plot, "Originals (blue) and reconstructions (red) in one t-SNE map.")],
        findings=[
            f"{results['own_neighbour_rate_pixels']:.0%} of reconstructions have their own original as nearest "
            f"original in pixel space ({results['own_neighbour_rate_map']:.0%} in the map). kNN mixing is "
            f"{results['knn_mixing']:.2f} (1 = the two sets are indistinguishable, 0 = fully separate)."
        ],
    )
