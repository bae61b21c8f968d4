"""The pretraining report's pipeline (issue: the second example report): the dAE's decoder,
DIM's feature map, both pretraining runs and their evaluations at smoke scale through
Sacred, and the report built from those runs."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers import build_session_store, dotted, full_configs, pdf_text

from lfr_report import names
from lfr_report.errors import ConfigError
from lfr_report.models.decoder import ConvNetDecoder
from lfr_report.models.encoders import ConvNetEncoder
from lfr_report.report import pretraining as report
from lfr_report.running.runner import load_experiment
from lfr_report.ssl.dim import TERMS
from lfr_report.tracking.artifacts import read_encoder, read_npz
from lfr_report.tracking.store import FileRunStore


@pytest.mark.parametrize(("channels", "side"), [(1, 28), (3, 32)])
def test_the_decoder_mirrors_the_encoder_back_to_the_image(channels, side):
    encoder = ConvNetEncoder(channels, 64, (8, 16, 32, 64), "flatten", side)
    decoder = ConvNetDecoder(channels, 64, (8, 16, 32, 64), side)
    x = torch.rand(3, channels, side, side)
    out = decoder(encoder(x))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    feature_map = encoder.with_feature_map(x, 2)[0]
    assert feature_map.shape == (3, 32, (side + 3) // 4, (side + 3) // 4)
    encoder.eval()
    torch.testing.assert_close(encoder.with_feature_map(x, 2)[1], encoder(x))  # the same y, M on the way
    with pytest.raises(ConfigError, match=r"feature-map block must be in \[0, 3\], got 4"):
        encoder.with_feature_map(x, 4)


@pytest.fixture(scope="session")
def pretraining_runs(tmp_path_factory) -> Path:
    """A file store with every smoke-scale run the pretraining report needs."""
    return build_session_store(tmp_path_factory.mktemp("pretraining") / "runs", report.REPORT.gather)


def test_pretraining_runs_log_each_term_per_batch_and_store_a_usable_encoder(pretraining_runs):
    store = FileRunStore(pretraining_runs)
    dim = store.latest("pretrain", {"method": "dim", "alpha": 0.5, "beta": 1.0})
    dae = store.latest("pretrain", {"method": "dae"})
    assert dim.status == dae.status == "COMPLETED"
    metrics = store.metrics(dim.id)
    batches = dim.info["train_images"] // dim.config["batch_size"]
    for term in (*TERMS, "loss"):
        assert len(metrics[names.train_metric(term)].values) == batches
        assert len(metrics[names.test_metric(term)].values) == dim.config["dim_epochs"]
    # The JSD estimator starts near -2 log 2 (critics that score every pair alike) and is at most 0; the global
    # term, which the encoder and its critic learn first, rises within the one smoke epoch (-1.397 -> -1.309 here).
    for term in ("global_mi", "local_mi", "prior"):
        values = metrics[names.train_metric(term)].values
        assert values[0] == pytest.approx(-2 * math.log(2), abs=0.05) and max(values) <= 0.0, (term, values)
    global_mi = metrics[names.train_metric("global_mi")].values
    assert global_mi[-1] - global_mi[0] >= 0.03, global_mi
    assert set(store.metrics(dae.id)) == {names.train_metric("loss"), names.test_metric("loss")}
    encoder, arch = read_encoder(store, dim.id)
    assert arch["dim"] == dim.config["encoder_dim"] and encoder(torch.zeros(2, *arch_shape(arch))).shape == (2, 16)
    assert read_npz(store, dim.id, names.TEST_EMBEDDING_2D)["tsne"].shape == (dim.config["tsne_points"], 2)


def arch_shape(arch: dict) -> tuple[int, int, int]:
    return arch["in_channels"], arch["image_size"], arch["image_size"]


def test_evaluations_are_frozen_or_fine_tuned_runs_of_the_pretrained_encoders(pretraining_runs):
    store = FileRunStore(pretraining_runs)
    evaluations = store.find("finetune", "COMPLETED")
    assert len(evaluations) == 8
    frozen = [run for run in evaluations if run.config["frozen"]]
    assert len(frozen) == 5 and all(run.config["optimizer"] == "adam" for run in evaluations)
    assert sorted(run.config["fractions"] for run in evaluations)[0] == [0.05, 1.0]
    scratch = [run for run in evaluations if run.config["init"] == "scratch"]
    assert len(scratch) == 2 and sum(run.config["embed_fraction"] == 1.0 for run in scratch) == 1


def test_the_report_answers_the_example_in_its_order_with_the_runs_numbers(pretraining_runs, isolated):
    store = FileRunStore(isolated / "runs")
    shutil.rmtree(isolated / "runs")
    shutil.copytree(pretraining_runs, isolated / "runs")
    out = report.REPORT.build(store, "smoke", isolated / "reports" / "pretraining.pdf")
    pages, text = pdf_text(out)
    assert 3 <= pages <= 10
    order = ["Abstract", "Results at a glance", "1. Problem definition", "2.1 Baseline", "2.2 Denoising autoencoder", "2.3 Deep InfoMax", "Global MI",
             "Local MI", "Prior matching", "3.1 Implementation details", "3.2 Results", "Table 1.", "t-SNE",
             "3.3 Local against global", "Table 2.", "3.4 Conclusions", "References", "Hjelm"]  # fmt: skip
    positions = [text.index(heading) for heading in order]
    assert positions == sorted(positions)
    runs = report.REPORT.gather(store, "smoke")
    for key in ("baseline_frozen", "dae_tuned", "dim_frozen", "no_local_frozen"):
        mean, std = store.metrics(runs[key].id)[names.fraction_accuracy(0.05)].mean_std()
        assert f"{100 * mean:.2f} ± {100 * std:.2f}" in text, key
    assert "notes/pretraining/conclusions.md" in text
    assert len(store.runs()) == 12  # nothing was rerun


ACCURACY = {  # Table 1 of the default-scale build of 2026-12-05 (runs 37-44), by method, mode and label fraction
    ("baseline", "frozen", 0.05): 0.2882, ("dae", "frozen", 0.05): 0.5474, ("dim", "frozen", 0.05): 0.6198,
    ("baseline", "frozen", 1.0): 0.5352, ("dae", "frozen", 1.0): 0.6917, ("dim", "frozen", 1.0): 0.7236,
    ("baseline", "tuned", 0.05): 0.7395, ("dae", "tuned", 0.05): 0.7569, ("dim", "tuned", 0.05): 0.7550,
    ("baseline", "tuned", 1.0): 0.8618, ("dae", "tuned", 1.0): 0.8646, ("dim", "tuned", 1.0): 0.8669,
}  # fmt: skip


def test_the_abstract_says_where_pretraining_helps_from_the_table():
    text = report.abstract(ACCURACY, [1.0, 0.05], "Fashion-MNIST", "Fashion-MNIST")
    assert "With the encoder frozen, at 5% of the labels DIM gains +33.2 points over the baseline's 28.8% and the dAE " \
           "+25.9" in text  # fmt: skip
    assert "Fine-tuned, at 5% of the labels the dAE gains +1.7 points" in text
    assert "the labels make up for much of what pretraining gave" in text and "DIM helps more on average" in text


def test_the_abstract_says_so_when_pretraining_does_not_help():
    worse = {
        key: value - (0.1 if key[0] != "baseline" and key[1] == "tuned" else 0.0) for key, value in ACCURACY.items()
    }
    text = report.abstract(worse, [1.0, 0.05], "Tiny ImageNet", "CIFAR-10")
    assert "Fine-tuned, at 5% of the labels neither beats the baseline (dAE -8.3, DIM -8.5 points)" in text
    assert "the labels make up" in text and "pretrain the baseline's encoder on Tiny ImageNet" in text


def test_impossible_pretraining_configs_fail_before_a_run(isolated):
    quiet = {"--loglevel": "ERROR"}
    ex = load_experiment("pretrain")
    with pytest.raises(ConfigError, match=r"feature_block must be in \[0, 3\]"):
        ex.run(named_configs=["smoke"], config_updates={"feature_block": 7}, options=quiet)
    with pytest.raises(ConfigError, match="method must be dim or dae, got 'simclr'"):
        ex.run(named_configs=["smoke"], config_updates={"method": "simclr"}, options=quiet)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 2"):
        ex.run(named_configs=["smoke"], config_updates={"batch_size": 1}, options=quiet)
    assert not list((isolated / "runs").iterdir())


def test_a_random_encoder_gets_its_batch_norm_statistics_from_the_data_and_keeps_its_weights():
    from lfr_report.evaluate.finetune import calibrate_batch_norm

    torch.manual_seed(0)
    encoder = ConvNetEncoder(1, 16, (8, 16, 32, 64), "flatten", 28).eval()
    images = (torch.rand(300, 1, 28, 28) * 255).to(torch.uint8)
    weights = {k: v.clone() for k, v in encoder.state_dict().items() if "running" not in k and "num_batches" not in k}
    x = (images.float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        before = encoder(x).std(0).mean()
        calibrate_batch_norm(encoder, images, (0.5,), (0.25,), batch_size=100)
        after = encoder(x).std(0).mean()
    assert after > 10 * before  # the initial statistics (mean 0, variance 1) had shrunk the features
    assert not encoder.training and all(m.momentum == 0.1 for m in encoder.modules() if hasattr(m, "momentum"))
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in weights.items())


# The second example report's settings, as its text gives them (lfr2024-unsupervised-dataset-distillation.txt)
EXAMPLE = {
    "pretrain": {"data.name": "tiny_imagenet", "transfer": "cifar10", "dim_epochs": 20, "dae_epochs": 10,
                 "encoder_dim": 64, "batch_size": 128, "lr": 1e-4, "alpha": 0.5, "beta": 1.0, "gamma": 0.1},
    "finetune": {"epochs": 20, "lr": 1e-3, "batch_size": 64, "optimizer": "adam", "fractions": [0.05, 1.0],
                 "head_layers": 3},
}  # fmt: skip


def test_the_reports_full_runs_have_the_examples_settings(monkeypatch):
    for key, config in full_configs(report.REPORT, monkeypatch).items():
        experiment = "pretrain" if "dim_epochs" in config else "finetune"
        ablated = {"no_local": "beta", "no_global": "alpha"}.get(key)  # the ablations set one weight to 0
        for name, value in EXAMPLE[experiment].items():
            wanted = 0.0 if name == ablated else value
            assert dotted(config, name) == wanted, (key, name, dotted(config, name))


def test_a_killed_deep_infomax_run_resumes_both_players_to_the_uninterrupted_run(tmp_path):
    """SIGKILL after an epoch's checkpoint, then the same command: the encoder with its critics and
    the prior's discriminator (the two players) resume, and the run ends with the weights and
    metrics of a run never stopped."""
    import os
    import signal
    import subprocess
    import sys

    from helpers import wait_until

    repo = Path(__file__).resolve().parents[1]
    args = ("with", "smoke", "dim_epochs=4", "tsne_points=50")

    def start(root: Path) -> subprocess.Popen:
        """The run in its own process, its output into root/output.log (a pipe nobody reads could fill and stall it)."""
        env = {**os.environ, "PYTHONPATH": str(repo), "LFR_RUNS_DIR": str(root / "runs"),
               "LFR_CHECKPOINT_DIR": str(root / "checkpoints")}  # fmt: skip
        root.mkdir(exist_ok=True)
        with open(root / "output.log", "ab") as log:
            return subprocess.Popen([sys.executable, str(repo / "experiments" / "pretrain.py"), *args], cwd=tmp_path,
                                    env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def output(root: Path) -> str:
        return (root / "output.log").read_text(errors="replace")[-2000:]

    reference = start(tmp_path / "reference")
    assert reference.wait(timeout=600) == 0, output(tmp_path / "reference")
    root = tmp_path / "killed"
    killed = start(root)
    wait_until(lambda: list((root / "checkpoints").glob("*.pt")), "a first checkpoint", killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    rerun = start(root)
    assert rerun.wait(timeout=600) == 0, output(root)
    ours, theirs = FileRunStore(root / "runs"), FileRunStore(tmp_path / "reference" / "runs")
    [resumed] = [run for run in ours.runs() if run.status == "COMPLETED"]
    assert resumed.info["resumed_from_epoch"] >= 1
    assert ours.metrics(resumed.id) == theirs.metrics("1")  # every term of both players, per batch and per epoch
    encoder, _ = read_encoder(ours, resumed.id)
    expected, _ = read_encoder(theirs, "1")
    for (name, a), b in zip(encoder.state_dict().items(), expected.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
