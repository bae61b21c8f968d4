"""Downstream evaluation of a stored encoder: one task per run, the encoder's run id in the config.

    python experiments/downstream.py with task=anomaly encoder_run=7
    python experiments/downstream.py with task=retrieval 'encoder_config={"scale": "default", "mu": 25.0}'
    python experiments/downstream.py with smoke task=clustering encoder_run=3

Tasks (each on the encoder run's own dataset and data subsets):

* ``probe``: linear probe on the frozen representations (``probe_test_accuracy``);
* ``embeddings``: PCA and t-SNE of the test representations (``test_embedding_2d.npz``);
* ``retrieval``: for one random training image per class, its nearest and farthest
  training images (``retrieval.npz`` with the images themselves);
* ``anomaly``: kNN inverse density (eq. 7, k = ``anomaly_k``) of the test split (normal)
  and of ``anomaly_data``'s test split (anomalies, resized to the encoder's input),
  against the training representations; ROC and AUC (``anomaly_auc``, ``anomaly.npz``);
* ``clustering``: k-means on the training representations, the silhouette score in the
  original dimension, and a t-SNE of a sample with the cluster centres
  (``silhouette``, ``adjusted_rand``, ``clustering.npz``).

``encoder_config`` picks the newest COMPLETED run of ``encoder_experiment`` whose config
matches it; the id it finds is written into ``encoder_run`` before the run starts, and
that run's ``data`` (name and subsets) into this run's ``data``.
"""

from __future__ import annotations

import numpy as np
import torch

from lfr_report import names
from lfr_report.data import load_dataset, subset_index
from lfr_report.data.augment import fit_to_shape
from lfr_report.errors import ConfigError
from lfr_report.evaluate import encode
from lfr_report.evaluate.anomaly import detect_anomalies
from lfr_report.evaluate.clustering import cluster
from lfr_report.evaluate.embed import pca_2d, tsne_2d
from lfr_report.evaluate.retrieval import one_per_class, retrieve
from lfr_report.experiment import (
    at_least,
    checks,
    completed_run,
    dataset,
    describe_data,
    load_encoder,
    mapping,
    new_experiment,
    one_of,
    optional,
    positive_int,
    record_data,
    run_number,
)
from lfr_report.ingredients import probe_ingredient, run_probe
from lfr_report.ingredients.data import splits
from lfr_report.registry import EXPERIMENTS
from lfr_report.tracking import open_store, run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

TASKS = ("probe", "embeddings", "retrieval", "anomaly", "clustering")

ex = new_experiment("downstream", probe_ingredient, data=False)  # its data is the encoder run's


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full: the scale of the encoder run it evaluates
    seed = 0  # seeds the query choice, k-means, t-SNE and the probe
    device = "auto"  # auto | cpu | cuda: where the encoder runs
    task = "probe"  # probe | embeddings | retrieval | anomaly | clustering
    encoder_run = None  # id of the run whose encoder.pt is evaluated
    encoder_experiment = "vicreg"  # with encoder_config: the experiment that made the encoder
    encoder_config = {}  # instead of encoder_run: config values the encoder's run must have (newest match)
    data = {"name": None, "train_size": None, "test_size": None}  # the encoder run's data and subsets, filled in from it
    retrieval_per_class = 1  # retrieval: query images per class
    retrieval_n = 5  # retrieval: nearest and farthest images shown per query
    anomaly_data = "mnist"  # anomaly: the dataset whose test split is the anomalies (the exercise: MNIST)
    anomaly_k = 2  # anomaly: neighbours in the inverse density score (eq. 7)
    anomaly_shown = 7  # anomaly: most anomalous test images kept for the figure
    clusters = 10  # clustering: k of k-means
    silhouette_points = 10000  # clustering: sample for the silhouette score (it costs O(N^2))
    tsne_points = 3000  # clustering and embeddings: points embedded with t-SNE for figures (as many as a half-page figure shows apart; full: 5000)


@ex.named_config
def smoke():
    scale = "smoke"
    anomaly_data = "digits"  # always present: scikit-learn's 8x8 digits, resized
    silhouette_points = 300
    tsne_points = 200
    probe = {"epochs": 10, "batch_size": 64}  # dozens of steps on smoke's few hundred features (the default 1,024 is one step an epoch)


@ex.named_config
def full():
    scale = "full"
    tsne_points = 5000


@ex.named_config
def rehearsal():
    # `with full rehearsal`: every setting of full with only its sizes shrunk, minutes on a CPU (a check before a GPU run)
    scale = "full rehearsal"
    silhouette_points = 200
    tsne_points = 100
    probe = {"epochs": 5}
# fmt: on


checks(ex, {
    "encoder_run": optional(run_number), "encoder_experiment": one_of(*EXPERIMENTS), "encoder_config": mapping,
    "data.name": optional(dataset), "data.train_size": optional(positive_int),
    "data.test_size": optional(at_least(2)), "anomaly_data": dataset,
    "task": one_of(*TASKS), "retrieval_per_class": positive_int, "retrieval_n": positive_int, "anomaly_k": positive_int,
    "anomaly_shown": positive_int, "clusters": positive_int, "silhouette_points": positive_int,
    "tsne_points": positive_int,
})  # fmt: skip


@ex.config_hook
def resolve_encoder(config, command_name, logger):
    """Name the encoder's run id in the config, resolving ``encoder_config``, and its data as this run's."""
    if config["encoder_run"] is not None:
        run_id = str(config["encoder_run"])
    elif not config["encoder_config"]:
        raise ConfigError("name the encoder: encoder_run=<run id> or encoder_config={...} (config values of its run)")
    else:
        store = open_store()
        found = store.latest(config["encoder_experiment"], config["encoder_config"])
        if found is None:
            raise ConfigError(
                f"no COMPLETED {config['encoder_experiment']} run in {store.location} matches {config['encoder_config']}"
            )
        run_id = found.id
    data = completed_run(run_id).config["data"]
    given = {key: value for key, value in config["data"].items() if value is not None}
    if any(data.get(key) != value for key, value in given.items()):
        raise ConfigError(f"data is the encoder's: run {run_id} has data={data}, not {given}")
    return {"encoder_run": run_id, "data": data}


def _views(images: torch.Tensor, index: np.ndarray) -> np.ndarray:
    return images[torch.as_tensor(index).reshape(-1)].reshape(*np.shape(index), *images.shape[1:]).numpy()


@ex.main
def main(_run, _seed, device, task, encoder_run, encoder_config, data, retrieval_per_class, retrieval_n, anomaly_data,
         anomaly_k, anomaly_shown, clusters, silhouette_points, tsne_points):  # fmt: skip
    device = begin_run(_run, _seed, device)
    source = completed_run(encoder_run)
    encoder, arch = load_encoder(encoder_run)
    encoder = encoder.to(device)
    train, test = splits(data["name"], data["train_size"], data["test_size"], source.config["seed"])
    record_data(_run, train.spec, dataset=train.name, data_source=train.source, encoder_experiment=source.experiment,
                encoder_arch=arch, encoder_found_by=encoder_config or "run id")  # fmt: skip
    mean, std = train.spec.mean, train.spec.std

    def represent(images: torch.Tensor) -> torch.Tensor:
        return encode(encoder, images, mean, std, device)

    summary: dict[str, float] = {}
    if task == "probe":
        result = run_probe(represent(train.images), train.labels, represent(test.images), test.labels, device)
        summary = {names.PROBE_TEST_ACCURACY: result.test_accuracy, names.PROBE_TRAIN_ACCURACY: result.train_accuracy}
    elif task == "embeddings":
        shown = subset_index(len(test), tsne_points, _seed)
        points = represent(test.images)[shown]
        add_npz_artifact(_run, names.TEST_EMBEDDING_2D, pca=pca_2d(points), tsne=tsne_2d(points, seed=_seed),
                         labels=test.labels[shown], index=shown)  # fmt: skip
    elif task == "retrieval":
        queries = one_per_class(train.labels, seed=_seed, per_class=retrieval_per_class)
        found = retrieve(represent(train.images), queries, retrieval_n)
        add_npz_artifact(
            _run, names.RETRIEVAL, queries=found.queries, nearest=found.nearest, farthest=found.farthest,
            nearest_distance=found.nearest_distance, farthest_distance=found.farthest_distance,
            query_images=_views(train.images, found.queries), nearest_images=_views(train.images, found.nearest),
            farthest_images=_views(train.images, found.farthest), query_labels=train.labels[found.queries],
            nearest_labels=train.labels[found.nearest], farthest_labels=train.labels[found.farthest],
        )  # fmt: skip
        summary = {"retrieval_nearest_same_class": float((train.labels[found.nearest] == train.labels[found.queries][:, None]).float().mean())}  # fmt: skip
    elif task == "anomaly":
        anomalies = load_dataset(anomaly_data, "test")
        anomaly_images = fit_to_shape(anomalies.images, train.spec.shape)
        result = detect_anomalies(represent(train.images), represent(test.images), represent(anomaly_images), anomaly_k)
        top = result.most_anomalous(anomaly_shown)
        all_images = torch.cat([test.images, anomaly_images])
        add_npz_artifact(
            _run, names.ANOMALY, scores=result.scores, labels=result.labels, fpr=result.fpr, tpr=result.tpr,
            top=top, top_images=_views(all_images, top), top_is_anomaly=result.labels[top],
        )  # fmt: skip
        _run.info.update(anomaly_source=anomalies.source, anomaly_images=len(anomaly_images), normal_images=len(test),
                         anomaly_spec=describe_data(anomalies.spec))  # fmt: skip
        summary = {names.ANOMALY_AUC: result.auc}
    elif task == "clustering":
        features = represent(train.images).numpy()
        labels = train.labels.numpy()
        result = cluster(features, labels, clusters, _seed, silhouette_points)
        shown = subset_index(len(features), tsne_points, _seed).numpy()
        embedded = tsne_2d(np.concatenate([features[shown], result.centres]), seed=_seed)
        add_npz_artifact(
            _run, names.CLUSTERING, tsne=embedded[: len(shown)], centres_tsne=embedded[len(shown) :],
            assignments=result.assignments[shown], labels=labels[shown], index=shown,
        )  # fmt: skip
        summary = {names.SILHOUETTE: result.silhouette, names.ADJUSTED_RAND: result.adjusted_rand}
        _run.info["silhouette_points"] = result.silhouette_points
    for name, value in summary.items():
        _run.log_scalar(name, value)

    headline = ", ".join(f"{k} {v:.4f}" for k, v in summary.items()) or "figures only"
    print(f"downstream run {_run._id}: {task} of run {encoder_run}'s encoder on {train.name}: {headline}; "
          f"results in {run_location(_run)}")  # fmt: skip
    return summary


if __name__ == "__main__":
    run_commandline(ex)
