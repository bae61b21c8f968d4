"""Laplacian eigenmaps on training images (the exercise's Q6, run rather than shown).

    python experiments/eigenmaps.py                  # default: 10,000 Fashion-MNIST training images
    python experiments/eigenmaps.py with smoke       # seconds, synthetic data
    python experiments/eigenmaps.py with full        # 10,000 CIFAR-10 training images, as the exercise

The images are embedded by an untrained CNN (4 conv layers, FC to 1024: the exercise's
footnote), a kNN graph is built on those vectors, and the normalised graph Laplacian's
smallest non-trivial eigenvectors are the representation. The embedding exists only
for the images in the graph, so the linear probe trains on a random part of them and is
scored on the rest (their labels are never used to build the embedding).

Metrics: ``probe_test_accuracy``, ``probe_train_accuracy``. Artifacts: ``eigenmap.npz``
(embedding, labels, indices into the train split, eigenvalues) and
``eigenmap_tsne.npz`` (t-SNE of the embedding).
"""

from __future__ import annotations

import numpy as np
import torch

from lfr_report import names
from lfr_report.data import subset_index
from lfr_report.errors import ConfigError
from lfr_report.evaluate import encode
from lfr_report.evaluate.eigenmaps import laplacian_eigenmap
from lfr_report.evaluate.embed import tsne_2d
from lfr_report.experiment import checks, interval, new_experiment, positive_int, record_data
from lfr_report.ingredients import load_splits, probe_ingredient, run_probe
from lfr_report.models import RandomFeatureCNN
from lfr_report.tracking import run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

ex = new_experiment("eigenmaps", probe_ingredient)


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full: which named config produced this run
    seed = 0  # seeds the CNN's random weights, the image sample and the probe split
    device = "auto"  # auto | cpu | cuda: where the CNN embeds the images
    images = 10000  # training images in the graph (the exercise ran it on 10K)
    cnn_dim = 1024  # output size of the untrained CNN (the exercise's footnote)
    neighbours = 10  # k of the kNN graph
    components = 128  # eigenvectors kept: the representation's size (VICReg's is 128)
    probe_fraction = 0.8  # share of the embedded images the probe trains on; the rest score it


@ex.named_config
def smoke():
    scale = "smoke"
    data = {"name": "synthetic"}
    images = 400
    components = 16
    probe = {"epochs": 10, "batch_size": 64}  # dozens of steps on smoke's few hundred features (the default 1,024 is one step an epoch)


@ex.named_config
def full():
    scale = "full"
    data = {"name": "cifar10"}


@ex.named_config
def rehearsal():
    # `with full rehearsal`: every setting of full with only its sizes shrunk, minutes on a CPU (a check before a GPU run)
    scale = "full rehearsal"
    images = 200
    probe = {"epochs": 5}
# fmt: on


def _below_the_images(config):
    if config["components"] + 1 >= config["images"] or config["neighbours"] >= config["images"]:
        raise ConfigError("components and neighbours must be well below the number of images")


checks(ex, {"images": positive_int, "cnn_dim": positive_int, "neighbours": positive_int, "components": positive_int,
            "probe_fraction": interval("(0, 1)")}, extra=_below_the_images)  # fmt: skip


@ex.main
def main(_run, _seed, seed, device, images, cnn_dim, neighbours, components, probe_fraction):
    device = begin_run(_run, _seed, device)
    train, _ = load_splits(seed)
    chosen = subset_index(len(train), images, _seed)
    graph_set = train.subset(images, seed=_seed)
    record_data(_run, train.spec, data_source=train.source, train_images=len(graph_set))

    cnn = RandomFeatureCNN(train.spec.channels, train.spec.shape[-1], cnn_dim).to(device)
    vectors = encode(cnn, graph_set.images, train.spec.mean, train.spec.std, device).numpy()
    eigenmap = laplacian_eigenmap(vectors, neighbours, components, seed=_seed)
    _run.info["graph_components"] = eigenmap.components_connected

    labels = graph_set.labels
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(_seed))
    cut = int(probe_fraction * len(labels))
    fit_part, score_part = order[:cut], order[cut:]
    embedding = torch.from_numpy(eigenmap.embedding)
    probe = run_probe(embedding[fit_part], labels[fit_part], embedding[score_part], labels[score_part], device)
    _run.log_scalar("probe_test_accuracy", probe.test_accuracy)
    _run.log_scalar("probe_train_accuracy", probe.train_accuracy)

    add_npz_artifact(_run, names.EIGENMAP, embedding=eigenmap.embedding, labels=labels, index=chosen,
                     eigenvalues=eigenmap.eigenvalues, probe_scored=score_part)  # fmt: skip
    add_npz_artifact(_run, names.EIGENMAP_TSNE, tsne=tsne_2d(eigenmap.embedding, seed=_seed), labels=labels)
    print(f"eigenmaps run {_run._id}: linear probe {probe.test_accuracy:.2%} on {len(score_part)} held-out embedded "
          f"{train.name} images; embedding in {run_location(_run)}")  # fmt: skip
    return {"probe_test_accuracy": probe.test_accuracy, "graph_components": eigenmap.components_connected,
            "smallest_eigenvalues": np.round(eigenmap.eigenvalues[:3], 6).tolist()}  # fmt: skip


if __name__ == "__main__":
    run_commandline(ex)
