"""The ablation, eigenmaps and downstream pipelines at smoke scale, read from the shared smoke store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfr_report.data import Augment, AugmentParams
from lfr_report.errors import ConfigError
from lfr_report.report.vicreg import REPORT
from lfr_report.running.runner import load_experiment
from lfr_report.ssl.views import neighbour_pair, neighbour_table
from lfr_report.tracking.artifacts import read_npz
from lfr_report.tracking.store import FileRunStore


@pytest.fixture(scope="module")
def runs(smoke_runs):
    store = FileRunStore(smoke_runs)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LFR_RUNS_DIR", str(smoke_runs))  # downstream's config names its encoder run's data, read from there
        return store, REPORT.gather(store, "smoke")


def test_neighbour_views_pair_each_image_with_one_of_its_k_nearest():
    features = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0], [30.0]])
    table = neighbour_table(features, k=2)
    assert table[0].tolist() == [1, 2] and table[3].tolist() == [4, 2]
    images = torch.arange(6, dtype=torch.uint8).view(6, 1, 1, 1).expand(6, 1, 2, 2).contiguous() * 40
    make = neighbour_pair(images, table, Augment(AugmentParams(), (0.0,), (1.0,)))
    index = torch.tensor([0, 3, 5])
    seen = set()
    for seed in range(20):
        anchor, partner = make(images[index], index, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(anchor, images[index].float() / 255)  # the image itself, not augmented
        partner_ids = (partner[:, 0, 0, 0] * 255 / 40).round().long()
        for i, p in zip(index.tolist(), partner_ids.tolist(), strict=True):
            assert p in table[i].tolist()
            seen.add((i, p))
    assert len(seen) == 6  # both neighbours of each image get drawn


def test_no_generated_neighbours_run_uses_the_vicreg_run(runs):
    store, found = runs
    run = found["no_neighbours"]
    assert run.status == "COMPLETED"
    assert run.config["views"] == "neighbours" and str(run.config["neighbours_from"]) == found["vicreg"].id
    assert run.config["epochs"] == 1
    metrics = store.metrics(run.id)
    assert len(metrics["train_loss"].values) == 512 // 64 and "test_loss" in metrics
    assert metrics["probe_test_accuracy"].values[-1] >= 0.3  # chance is 0.1; 0.53 here


def test_no_variance_run_sets_mu_to_zero(runs):
    _, found = runs
    assert found["no_variance"].config["mu"] == 0.0 and found["vicreg"].config["mu"] == 25.0


def test_eigenmaps_run_records_a_transductive_embedding_and_its_probe(runs):
    store, found = runs
    run = found["eigenmaps"]
    eigenmap = read_npz(store, run.id, "eigenmap.npz")
    assert eigenmap["embedding"].shape == (400, 16)
    assert (np.diff(eigenmap["eigenvalues"]) >= -1e-9).all() and eigenmap["eigenvalues"][0] > 0
    assert len(eigenmap["probe_scored"]) == 80  # 20% of the 400 embedded images score the probe
    assert run.info["graph_components"] == 1
    assert read_npz(store, run.id, "eigenmap_tsne.npz")["tsne"].shape == (400, 2)
    assert store.metrics(run.id)["probe_test_accuracy"].values[-1] >= 0.8  # chance is 0.1; 0.97 here (transductive)


def test_downstream_runs_name_their_encoder_and_store_their_figures(runs):
    store, found = runs
    for model in ("vicreg", "no_neighbours"):
        for task in ("retrieval", "anomaly", "clustering"):
            run = found[f"{model}_{task}"]
            assert str(run.config["encoder_run"]) == found[model].id and run.config["task"] == task
    retrieval = read_npz(store, found["vicreg_retrieval"].id, "retrieval.npz")
    assert retrieval["query_images"].shape == (10, 1, 28, 28)
    assert retrieval["nearest_images"].shape == retrieval["farthest_images"].shape == (10, 5, 1, 28, 28)
    assert sorted(retrieval["query_labels"].tolist()) == list(range(10))
    anomaly = read_npz(store, found["vicreg_anomaly"].id, "anomaly.npz")
    assert anomaly["top_images"].shape == (7, 1, 28, 28)  # digits resized to the encoder's input
    assert anomaly["labels"].sum() == 359 and (anomaly["labels"] == 0).sum() == 256
    clustering = read_npz(store, found["vicreg_clustering"].id, "clustering.npz")
    assert clustering["centres_tsne"].shape == (10, 2) and clustering["tsne"].shape == (200, 2)


def test_downstream_numbers_are_those_of_their_stored_results_and_above_chance(runs):
    """Each headline number recomputed from the run's own artifact, and above what chance gives
    (10 classes: 0.1 for retrieval, 0.5 for the AUC, 0 for the adjusted Rand index)."""
    from sklearn.metrics import roc_auc_score

    store, found = runs
    for model in ("vicreg", "no_neighbours"):
        run = found[f"{model}_retrieval"]
        retrieval = read_npz(store, run.id, "retrieval.npz")
        same = (retrieval["nearest_labels"] == retrieval["query_labels"][:, None]).mean()
        assert store.metrics(run.id)["retrieval_nearest_same_class"].values == [pytest.approx(same)]
        assert same >= 0.5, model  # 0.94 and 1.0 here
        run = found[f"{model}_anomaly"]
        anomaly = read_npz(store, run.id, "anomaly.npz")
        auc = roc_auc_score(anomaly["labels"], anomaly["scores"])
        assert store.metrics(run.id)["anomaly_auc"].values == [pytest.approx(auc)]
        assert auc >= 0.75, model  # 1.0 and 0.91 here: digits are far from gratings
        clustering = store.metrics(found[f"{model}_clustering"].id)
        assert clustering["adjusted_rand"].values[0] >= 0.05 and 0 < clustering["silhouette"].values[0] <= 1, model


def _config(experiment, named, updates):
    from lfr_report.running.runner import expected_config

    return expected_config(load_experiment(experiment), named, updates)


def test_downstream_resolves_encoder_config_to_a_run_id(runs, monkeypatch):
    store, found = runs
    monkeypatch.setenv("LFR_RUNS_DIR", str(store.root))
    config = _config("downstream", ["smoke"], {"task": "retrieval", "encoder_config": {"mu": 0.0}})
    assert config["encoder_run"] == found["no_variance"].id


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ({"task": "nope", "encoder_run": "1"}, "task must be probe, .* or clustering, got 'nope'"),
        ({"task": "probe"}, "name the encoder"),
        ({"task": "probe", "encoder_config": {"mu": 123.0}}, "no COMPLETED vicreg run"),
    ],
)
def test_downstream_config_errors_are_one_line(runs, monkeypatch, updates, message):
    store, _ = runs
    monkeypatch.setenv("LFR_RUNS_DIR", str(store.root))
    with pytest.raises(ConfigError, match=message):
        _config("downstream", ["smoke"], updates)


def test_neighbours_without_a_source_run_is_a_config_error():
    with pytest.raises(ConfigError, match="views=neighbours needs neighbours_from"):
        _config("vicreg", ["smoke", "no_generated_neighbours"], {})
