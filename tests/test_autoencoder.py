"""Problem Set 7's pipelines: the autoencoder (architecture, loss, training), the autoencoder
and image-text experiments through Sacred at smoke scale, and the report built from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import build_session_store, pdf_text
from torch import nn

from lfr_report.errors import ConfigError
from lfr_report.models.autoencoder import ConvAutoencoder, ConvEncoder
from lfr_report.report import autoencoder as report
from lfr_report.running.runner import load_experiment
from lfr_report.ssl.autoencoder import corrupt, evaluate_reconstruction, reconstruction_loss, train_autoencoder
from lfr_report.tracking.artifacts import read_npz
from lfr_report.tracking.store import FileRunStore


def test_every_convolution_is_kernel_4_stride_2_padding_1_and_shapes_round_trip():
    model = ConvAutoencoder(3, 32, (12, 24, 48))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert len(convs) == 6
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) and c.padding == (1, 1) for c in convs)
    x = torch.rand(2, 3, 32, 32)
    assert model.encoder(x).shape == (2, 48 * 4 * 4) == (2, model.encoder.dim)
    out = model(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1  # the sigmoid
    with pytest.raises(ConfigError, match="multiple of 2\\^3"):
        ConvEncoder(1, 28, (4, 8, 16))


def test_corruption_and_the_reconstruction_loss():
    x = torch.rand(4, 1, 8, 8)
    assert corrupt(x, 0.0) is x
    noisy = corrupt(x, 0.5, torch.Generator().manual_seed(0))
    assert not torch.equal(noisy, x) and noisy.min() >= 0 and noisy.max() <= 1
    identity = nn.Identity()
    assert reconstruction_loss(identity, x).item() == 0.0
    noisy_input = reconstruction_loss(identity, x, 0.5, torch.Generator().manual_seed(0))
    assert noisy_input.item() > 0  # the target is the clean image


def test_training_lowers_the_reconstruction_error():
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(128, 1, 1, 1, generator=g) * 255).to(torch.uint8).expand(128, 1, 16, 16).contiguous()
    torch.manual_seed(0)
    model = ConvAutoencoder(1, 16, (4, 8))
    before = evaluate_reconstruction(model, images[:32], 0.0, torch.device("cpu"))
    logged: dict[str, list[float]] = {}
    train_autoencoder(model, images, images[:32], epochs=20, batch_size=32, lr=1e-2, noise_std=0.0, generator=g,
                      device=torch.device("cpu"), log=lambda k, v, s: logged.setdefault(k, []).append(v),
                      progress=False)  # fmt: skip
    assert len(logged["train_loss"]) == len(logged["test_loss"]) == 20
    assert logged["test_loss"][-1] < 0.25 * before


@pytest.fixture(scope="session")
def ae_runs(tmp_path_factory) -> Path:
    """A file store with every smoke-scale run the autoencoder report needs."""
    return build_session_store(tmp_path_factory.mktemp("autoencoder") / "runs", report.REPORT.gather)


def test_the_autoencoder_run_logs_every_classifier_per_seed(ae_runs):
    store = FileRunStore(ae_runs)
    plain = store.latest("autoencoder", {"noise_std": 0.0})
    denoising = store.latest("autoencoder", {"classifiers": ["frozen"]})
    assert denoising.config["noise_std"] > 0
    metrics = store.metrics(plain.id)
    for kind in ("frozen", "joint", "random"):
        assert metrics[f"accuracy_{kind}"].steps == [0, 1], kind
    assert set(store.metrics(denoising.id)) >= {"accuracy_frozen", "train_loss", "test_loss"}
    assert "accuracy_random" not in store.metrics(denoising.id)
    shown = read_npz(store, denoising.id, "reconstructions.npz")
    assert shown["images"].shape == shown["outputs"].shape and not (shown["inputs"] == shown["images"]).all()
    assert plain.info["unlabelled_from"] == "train split, labels dropped"


def test_the_image_text_run_logs_probe_zero_shot_and_retrieval(ae_runs):
    store = FileRunStore(ae_runs)
    run = store.latest("clip")
    metrics = store.metrics(run.id)
    assert metrics["train_loss"].steps == [1, 2] and metrics["test_loss"].steps == [1, 2]
    assert metrics["probe_accuracy"].steps == [0, 1]
    assert metrics["zero_shot_accuracy"].steps == [0] and run.result["zero_shot_accuracy"] == pytest.approx(
        metrics["zero_shot_accuracy"].values[0]
    )
    assert metrics["zero_shot_accuracy"].values[0] >= 0.25  # 10 captions to choose from: chance 0.1; 0.43 here
    retrieval = read_npz(store, run.id, "retrieval.npz")
    named = retrieval["named_class"] >= 0  # the queries naming a class: precision is the share of it in their top k
    precision = (retrieval["labels"][named] == retrieval["named_class"][named][:, None]).mean(axis=1).mean()
    assert metrics["retrieval_precision"].values == [pytest.approx(precision)] and precision >= 0.25  # 0.46 here
    queries = len(run.config["queries"]) + 10  # one per class, then the free-text ones
    assert retrieval["index"].shape == (queries, run.config["top_k"])
    assert retrieval["images"].shape[:2] == (queries, run.config["top_k"])
    assert (retrieval["scores"][:, :-1] >= retrieval["scores"][:, 1:]).all()  # best first
    assert retrieval["named_class"][-1] == -1 and "park" in str(retrieval["unknown_words"][-1])


def test_report_answers_problem_set_7_in_order_from_the_runs(ae_runs, isolated):
    root = isolated / "runs"
    shutil.rmtree(root)
    shutil.copytree(ae_runs, root)
    store = FileRunStore(root)
    out = report.REPORT.build(store, "smoke", isolated / "reports" / "autoencoder.pdf")
    pages, text = pdf_text(out)
    assert 3 <= pages <= 10
    order = ["Problem 7.1: Autoencoders", "Linear classifiers: methods I, II and III", "Table 1.",
             "Problem 7.2: Associating images with language", "Linear probing evaluation", "Table 2.",
             "Text-to-image retrieval"]  # fmt: skip
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions)
    assert "This run used neither" in text  # says which encoders were used
    runs = report.REPORT.gather(store, "smoke")
    for key, kind in (("plain", "frozen"), ("plain", "random"), ("denoising", "frozen")):
        mean, std = store.metrics(runs[key].id)[f"accuracy_{kind}"].mean_std()
        assert f"{100 * mean:.2f} ± {100 * std:.2f}" in text, (key, kind)
    mean, std = store.metrics(runs["clip"].id)["probe_accuracy"].mean_std()
    assert f"{100 * mean:.2f} ± {100 * std:.2f}" in text
    assert len(store.runs()) == 3  # nothing was rerun


def test_impossible_configs_fail_before_a_run_is_recorded(isolated):
    quiet = {"--loglevel": "ERROR"}
    with pytest.raises(ConfigError, match="image_size must be a multiple of 8"):
        load_experiment("autoencoder").run(named_configs=["smoke"], config_updates={"image_size": 28}, options=quiet)
    with pytest.raises(ConfigError, match="classifiers must be a non-empty list, each frozen, joint or random"):
        load_experiment("autoencoder").run(named_configs=["smoke"], config_updates={"classifiers": ["svm"]},
                                           options=quiet)  # fmt: skip
    with pytest.raises(ConfigError, match="batch_size must be in"):
        load_experiment("clip").run(named_configs=["smoke"], config_updates={"batch_size": 100000}, options=quiet)
    with pytest.raises(ConfigError, match="fewer than the 60000 \\+ 256 asked for"):  # found once the data is read
        load_experiment("clip").run(named_configs=["smoke"], config_updates={"data.train_size": 60000}, options=quiet)
    assert not list((isolated / "runs").iterdir())
