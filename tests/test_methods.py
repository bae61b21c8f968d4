"""The methods report and what it rests on: the weighted kNN evaluation against a direct
loop, each method as a step of the one training loop (BYOL's target resumed with it), the
experiment's runs at smoke scale, one protocol for every method at every scale, and the
PDF built from the runs."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from helpers import build_session_store, full_configs, pdf_text

from lfr_report import names
from lfr_report.data import Augment, AugmentParams, load_dataset
from lfr_report.errors import ConfigError
from lfr_report.evaluate.knn import knn_accuracy, knn_predict
from lfr_report.models import build_encoder, encoder_arch
from lfr_report.report import methods as report
from lfr_report.running.runner import expected_config, load_experiment
from lfr_report.ssl.methods import METHODS, Settings, build
from lfr_report.ssl.train import train_loop
from lfr_report.tracking.artifacts import read_encoder, read_npz
from lfr_report.tracking.store import FileRunStore

TERMS = {"rotation": {"accuracy"}, "jigsaw": {"accuracy"}, "relative_position": {"accuracy"}, "mae": {"visible_mse"},
         "simclr": {"positive_similarity", "top1"}, "byol": {"similarity"},
         "vicreg": {"invariance", "variance", "covariance"}, "barlow": {"on_diagonal", "off_diagonal"}}  # fmt: skip


# --- the kNN classifier -------------------------------------------------------------------


def reference_knn(train_x, train_y, test_x, k, temperature):
    """Wu et al.'s weighted vote, one test point at a time, in plain Python."""
    predictions = []
    for q in test_x.tolist():
        sims = []
        for x, y in zip(train_x.tolist(), train_y.tolist(), strict=True):
            dot = sum(a * b for a, b in zip(q, x, strict=True))
            sims.append((dot / (math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in x))), y))
        votes: dict[int, float] = {}
        for s, y in sorted(sims, reverse=True)[:k]:
            votes[y] = votes.get(y, 0.0) + math.exp(s / temperature)
        predictions.append(max(votes, key=votes.get))
    return predictions


@pytest.mark.parametrize(("k", "temperature"), [(1, 0.1), (5, 0.1), (12, 0.5), (40, 0.07)])
def test_knn_matches_the_weighted_vote_written_as_loops(k, temperature):
    g = torch.Generator().manual_seed(k)
    train_x, test_x = torch.randn(40, 6, generator=g), torch.randn(25, 6, generator=g)
    train_y = torch.randint(0, 4, (40,), generator=g)
    expected = reference_knn(train_x, train_y, test_x, k, temperature)
    assert knn_predict(train_x, train_y, test_x, k, temperature, chunk=7).tolist() == expected


def test_knn_votes_weigh_similarity_not_just_count():
    train_x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.1, 1.0]])
    train_y = torch.tensor([0, 1, 1])
    assert knn_predict(train_x, train_y, torch.tensor([[1.0, 0.05]]), k=3, temperature=0.1).tolist() == [0]
    assert knn_predict(train_x, train_y, torch.tensor([[1.0, 0.05]]), k=3, temperature=100.0).tolist() == [1]


def test_knn_scores_separable_classes_and_rejects_impossible_k():
    g = torch.Generator().manual_seed(0)
    centres = 5 * torch.randn(3, 8, generator=g)
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 8, generator=g)
    assert knn_accuracy(x[:200], y[:200], x[200:], y[200:], k=20) > 0.95
    assert knn_accuracy(x[:200], y[torch.randperm(200, generator=g)], x[200:], y[200:], k=20) < 0.6
    with pytest.raises(ValueError, match="k=201 neighbours asked of 200"):
        knn_predict(x[:200], y[:200], x[200:], k=201)


# --- the methods as steps of the training loop ----------------------------------------------


def _method(name: str, total_steps: int, seed: int = 0):
    torch.manual_seed(seed)
    spec = load_dataset("synthetic", "train").spec
    encoder = build_encoder(**encoder_arch("convnet", 1, 16, 28, [8, 16], "avg"))
    settings = Settings(projector_dim=32, decoder_widths=(8, 16), permutations=8, head_hidden=32)
    generator = torch.Generator().manual_seed(seed)
    chosen = build(name, encoder, Augment(AugmentParams(), spec.mean, spec.std), settings, channels=1, image_size=28,
                   total_steps=total_steps, generator=generator, device=torch.device("cpu"))  # fmt: skip
    optimizer = torch.optim.Adam([p for m in (encoder, *chosen.trained.values()) for p in m.parameters()], lr=1e-3)
    return encoder, chosen, optimizer, generator


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_is_a_step_of_the_training_loop_logging_its_terms(name):
    images = load_dataset("synthetic", "train").images[:128]
    encoder, chosen, optimizer, generator = _method(name, total_steps=4)
    logged: dict[str, list[float]] = {}
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    train_loop(chosen.step, images, modules={"encoder": encoder, **chosen.trained, **chosen.kept}, optimizer=optimizer,
               epochs=1, batch_size=32, device=torch.device("cpu"), generator=generator, log_every=1, progress=False,
               log=lambda key, value, step: logged.setdefault(key, []).append(value))  # fmt: skip
    assert set(logged) == {"train_loss", *(f"train_{term}" for term in TERMS[name])}
    assert len(logged["train_loss"]) == 4 and all(math.isfinite(v) for v in logged["train_loss"])
    changed = [
        k for k, v in encoder.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])
    ]
    assert changed, "the encoder did not train"


def test_a_byol_run_killed_after_an_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    images = load_dataset("synthetic", "train").images[:128]

    def run(checkpoint, stop_at=None):
        encoder, chosen, optimizer, generator = _method("byol", total_steps=8)
        steps = [0]

        def step(batch, index):
            if steps[0] == stop_at:
                raise KeyboardInterrupt
            steps[0] += 1
            return chosen.step(batch, index)

        result = train_loop(step, images, modules={"encoder": encoder, **chosen.trained, **chosen.kept},
                            optimizer=optimizer, epochs=2, batch_size=32, device=torch.device("cpu"),
                            generator=generator, checkpoint=checkpoint, progress=False)  # fmt: skip
        return encoder, chosen.kept["target"], result

    uninterrupted, target, _ = run(None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "byol.pt", stop_at=6)  # in the second epoch: the checkpoint holds the first
    resumed, resumed_target, result = run(tmp_path / "byol.pt")
    assert result.resumed_from_epoch == 1
    assert int(resumed_target.updates) == int(target.updates) == 8  # the EMA schedule went on where it stopped
    for mine, theirs in ((resumed, uninterrupted), (resumed_target, target)):
        for (key, a), b in zip(mine.state_dict().items(), theirs.state_dict().values(), strict=True):
            assert torch.allclose(a.float(), b.float(), atol=1e-6), key


# --- the experiment and the report ----------------------------------------------------------


@pytest.fixture(scope="session")
def method_runs(tmp_path_factory) -> Path:
    """A file store with every smoke-scale run the methods report needs."""
    return build_session_store(tmp_path_factory.mktemp("methods") / "runs", report.REPORT.gather)


def test_every_method_run_records_its_curve_evaluations_encoder_and_timing(method_runs):
    store = FileRunStore(method_runs)
    for name in METHODS:
        run = store.latest("methods", {"method": name})
        metrics = store.metrics(run.id)
        steps = run.config["images_seen"] // run.config["batch_size"]
        assert metrics["train_loss"].steps == list(range(steps)), name
        assert {f"train_{term}" for term in TERMS[name]} <= set(metrics), name
        probes, seen = metrics[names.PROBE_TEST_ACCURACY], steps * run.config["batch_size"]
        assert probes.steps == [0, 1] and min(probes.values) >= 0.4, name  # chance: 0.1; 0.63 to 0.85 here
        assert run.result["probe_test_accuracy_mean"] == pytest.approx(sum(probes.values) / 2)
        knn = metrics[names.KNN_TEST_ACCURACY].values[-1]
        assert run.result[names.KNN_TEST_ACCURACY] == knn > 0.2, name  # chance: 0.1
        assert run.info["steps"] == steps and run.info["pretrain_seconds"] > 0
        assert run.info["images_per_second"] == pytest.approx(seen / run.info["pretrain_seconds"])
        encoder, arch = read_encoder(store, run.id)
        assert arch["widths"] == [8, 16] and encoder.dim == 16
        embedding = read_npz(store, run.id, names.TEST_EMBEDDING_2D)
        assert embedding["tsne"].shape == (run.config["tsne_points"], 2)
        tuned = store.latest("finetune", {"encoder_run": int(run.id)})
        assert tuned.config["fractions"] == [0.01, 0.1]


def test_every_method_gets_the_same_protocol_at_every_scale(monkeypatch):
    """Only ``method`` may differ between the report's runs of one scale: the encoder, data,
    budget, optimiser and evaluations are shared."""
    full = full_configs(report.REPORT, monkeypatch)
    for scale, configs in (("full", full), ("default", {need.key: expected_config(load_experiment(need.experiment),
                                                                                 list(need.named), need.updates)
                                                     for need in report.needs("default") if need.experiment == "methods"})):  # fmt: skip
        pretraining = [configs[m] for m in METHODS]
        shared = [{k: v for k, v in c.items() if k != "method"} for c in pretraining]
        assert all(c == shared[0] for c in shared), scale
        assert [c["method"] for c in pretraining] == list(METHODS)
    first = full["simclr"]
    assert (first["data"]["name"], first["encoder"], first["images_seen"]) == ("cifar10", "resnet18", 200 * 50_000)
    assert first["knn_k"] == 200 and first["knn_temperature"] == 0.1  # lightly's benchmark
    assert {full[f"{m}_tuned"]["fractions"] == [0.01, 0.1] for m in METHODS} == {True}


@pytest.mark.parametrize(("updates", "message"), [
    ({"method": "dino"}, "method must be rotation, .* got 'dino'"),
    ({"mask_ratio": 1.0}, "mask_ratio"),
    ({"images_seen": 10}, "images_seen=10 is less than one batch"),
    ({"data.train_size": 50}, "data.train_size=50 is smaller than one batch of 64"),
    ({"method": "mae", "mask_patch": 5}, "mask_patch=5 does not divide"),
])  # fmt: skip
def test_impossible_configs_fail_in_one_line_before_a_run_is_recorded(isolated, updates, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_experiment("methods").run(named_configs=["smoke"], config_updates=updates, options={"--loglevel": "ERROR"})
    assert "\n" not in str(error.value)
    assert not (isolated / "runs").exists() or not FileRunStore(isolated / "runs").runs()


def test_the_report_compares_every_method_from_its_runs(method_runs, isolated):
    root = isolated / "runs"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(method_runs, root)
    store = FileRunStore(root)
    out = report.REPORT.build(store, "smoke", isolated / "reports" / "methods.pdf")
    pages, text = pdf_text(out)
    assert 4 <= pages <= 12
    order = ["1. The methods", "Rotation", "Jigsaw", "Relative position", "MAE-style", "SimCLR", "BYOL", "VICReg",
             "Barlow Twins", "2. One protocol", "3. Results", "Table 1.", "Accuracy against pretraining time",
             "t-SNE", "4. Comparison", "References"]  # fmt: skip
    positions, start = [], 0
    for heading in order:
        start = text.index(heading, start)
        positions.append(start)
    runs = report.REPORT.gather(store, "smoke")
    for name in METHODS:
        run, tuned = runs[name], runs[f"{name}_tuned"]
        mean, std = store.metrics(run.id)[names.PROBE_TEST_ACCURACY].mean_std()
        assert f"{100 * mean:.2f} ± {100 * std:.2f}" in text, name
        assert f"{100 * run.result[names.KNN_TEST_ACCURACY]:.2f}" in text, name
        mean, std = store.metrics(tuned.id)[names.fraction_accuracy(0.1)].mean_std()
        assert f"{100 * mean:.2f} ± {100 * std:.2f}" in text, name
        assert f"{run.id}, {tuned.id}" in text, name
    assert "Published" not in text  # the published figures are for the full scale's data and backbone
    assert len(store.runs()) == 2 * len(METHODS)  # nothing was rerun


def test_findings_name_the_best_and_the_methods_within_the_spread():
    def row(name, family, linear):
        return {"name": name, "family": family, "evaluations": {"linear": linear, "knn": (linear[0], None),
                                                                 "ft1": linear, "ft10": linear}}  # fmt: skip

    rows = [row("A", "pretext task", (0.80, 0.01)), row("B", "contrastive", (0.79, 0.005)),
            row("C", "contrastive", (0.70, 0.01))]  # fmt: skip
    linear = report.findings(rows)[0]
    assert (linear["best"], linear["family"], linear["tied"], linear["worst"]) == ("A", "pretext task", ["B"], "C")
    assert linear["families"] == [("pretext task", "A", 0.80), ("contrastive", "B", 0.79)]
    knn = report.findings(rows)[1]
    assert knn["tied"] == []  # no seeds: 1 point apart is more than the 0.5 allowed
