"""kNN scoring against brute-force NumPy, retrieval, anomaly detection, clustering and
Laplacian eigenmaps on small problems with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfr_report.evaluate.anomaly import detect_anomalies
from lfr_report.evaluate.clustering import cluster
from lfr_report.evaluate.eigenmaps import knn_graph, laplacian_eigenmap
from lfr_report.evaluate.retrieval import one_per_class, retrieve
from lfr_report.models import RandomFeatureCNN
from lfr_report.neighbours import inverse_density_score, knn


def brute_force_distances(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return np.sqrt(((queries[:, None, :].astype(np.float64) - reference[None, :, :]) ** 2).sum(-1))


@pytest.mark.parametrize("k", [1, 2, 5])
def test_knn_matches_brute_force_numpy(k):
    rng = np.random.default_rng(k)
    reference, queries = rng.standard_normal((300, 12)), rng.standard_normal((40, 12))
    distances, ids = knn(reference, queries, k)
    expected = brute_force_distances(reference, queries)
    np.testing.assert_array_equal(ids, np.argsort(expected, axis=1)[:, :k])
    np.testing.assert_allclose(distances, np.sort(expected, axis=1)[:, :k], rtol=1e-4, atol=1e-5)


def test_inverse_density_score_is_eq_7_by_brute_force():
    rng = np.random.default_rng(0)
    train, test = rng.standard_normal((500, 8)), rng.standard_normal((60, 8)) * 2
    expected = np.sort(brute_force_distances(train, test), axis=1)[:, :2].mean(axis=1)
    np.testing.assert_allclose(inverse_density_score(train, test, k=2), expected, rtol=1e-4)


def test_knn_can_leave_each_point_out_of_its_own_neighbours():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((100, 4))
    _, ids = knn(x, x, 3, exclude_self=True)
    assert not (ids == np.arange(100)[:, None]).any()
    full = brute_force_distances(x, x)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_array_equal(ids, np.argsort(full, axis=1)[:, :3])
    with pytest.raises(ValueError):
        knn(x[:3], x[:3], 3, exclude_self=True)


def test_anomalies_far_from_the_normal_data_get_auc_one():
    rng = np.random.default_rng(2)
    train, normal = rng.standard_normal((400, 6)), rng.standard_normal((100, 6))
    anomalies = rng.standard_normal((50, 6)) + 10.0
    result = detect_anomalies(train, normal, anomalies, k=2)
    assert result.auc == 1.0
    assert set(result.most_anomalous(50)) == set(range(100, 150))
    assert result.labels.sum() == 50 and len(result.scores) == 150


def test_indistinguishable_anomalies_get_auc_near_a_half():
    rng = np.random.default_rng(3)
    result = detect_anomalies(
        rng.standard_normal((500, 4)), rng.standard_normal((300, 4)), rng.standard_normal((300, 4))
    )
    assert 0.4 < result.auc < 0.6


def test_retrieval_finds_the_own_cluster_near_and_the_other_far():
    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2], 50)
    features = rng.standard_normal((150, 5)) * 0.1 + labels[:, None] * 5.0
    queries = one_per_class(labels, seed=0)
    assert [labels[q] for q in queries] == [0, 1, 2]
    found = retrieve(features, queries, n=5)
    assert (labels[found.nearest] == labels[queries][:, None]).all()
    assert not (found.nearest == queries[:, None]).any()
    far = labels[found.farthest]
    assert (far[0] == 2).all() and (far[2] == 0).all()  # the end clusters: the opposite end
    assert (far[1] != 1).all()  # the middle cluster: either end
    assert (np.diff(found.nearest_distance, axis=1) >= 0).all() and (
        np.diff(found.farthest_distance, axis=1) <= 0
    ).all()


def test_kmeans_recovers_separated_clusters():
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(4), 60)
    features = rng.standard_normal((240, 3)) * 0.2 + np.eye(4, 3)[labels] * 6
    result = cluster(features, labels, k=4, silhouette_points=100)
    assert result.adjusted_rand == pytest.approx(1.0)
    assert result.silhouette > 0.8 and result.silhouette_points == 100
    assert result.centres.shape == (4, 3)


def test_eigenmaps_split_two_blobs_joined_by_a_thin_bridge():
    """The first non-trivial eigenvector (the Fiedler vector) of a graph made of two dense
    blobs joined by a chain of points takes one sign on each blob."""
    rng = np.random.default_rng(6)
    groups = np.repeat([0, 1], 100)
    blobs = rng.standard_normal((200, 10)) * 0.3 + groups[:, None] * np.eye(10)[0] * 20.0
    bridge = np.linspace(0, 20, 40)[:, None] * np.eye(10)[0]
    result = laplacian_eigenmap(np.vstack([blobs, bridge]), neighbours=8, components=2)
    assert result.components_connected == 1
    assert 0 < result.eigenvalues[0] <= result.eigenvalues[1]  # connected: no second zero
    fiedler = result.embedding[:200, 0]
    assert len(set(np.sign(fiedler[groups == 0]))) == 1 and len(set(np.sign(fiedler[groups == 1]))) == 1
    assert np.sign(fiedler[0]) != np.sign(fiedler[-1])
    assert result.embedding.shape == (240, 2)


def test_eigenmaps_of_a_disconnected_graph_report_the_components():
    """Two components give a second zero eigenvalue, and its eigenvector (D^-1/2 u) is
    constant on each component, whichever basis of the null space the solver returns."""
    rng = np.random.default_rng(6)
    groups = np.repeat([0, 1], 100)
    result = laplacian_eigenmap(rng.standard_normal((200, 10)) * 0.3 + groups[:, None] * 20.0, neighbours=8,
                                components=2)  # fmt: skip
    assert result.components_connected == 2
    assert result.eigenvalues[0] == pytest.approx(0.0, abs=1e-6)
    null_vector = result.embedding[:, 0]
    for g in (0, 1):
        assert np.ptp(null_vector[groups == g]) < 1e-3 * np.abs(null_vector).max()


def test_knn_graph_is_symmetric_with_weights_in_0_1():
    x = np.random.default_rng(7).standard_normal((50, 3))
    w = knn_graph(x, 4)
    assert (w != w.T).nnz == 0
    assert w.data.min() > 0 and w.data.max() <= 1
    assert w.diagonal().sum() == 0


def test_random_feature_cnn_maps_images_to_1024():
    net = RandomFeatureCNN(in_channels=1, image_size=28)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 1024)
