"""The one training loop under each of its objectives: a run killed after an epoch and started
again on its checkpoint ends with the weights and logged metrics of an uninterrupted run
(the autoencoder, the image-text model, fine-tuning); checkpoints are written atomically;
and the one normalisation."""

from __future__ import annotations

import threading

import pytest
import torch

from lfr_report.data import normalise
from lfr_report.data.captions import Vocabulary, caption_tokens
from lfr_report.evaluate import finetune
from lfr_report.evaluate.finetune import fine_tune
from lfr_report.models import build_encoder
from lfr_report.models.autoencoder import ConvAutoencoder
from lfr_report.models.clip import ImageTextModel, TextEncoder
from lfr_report.ssl import autoencoder as autoencoder_module
from lfr_report.ssl import clip as clip_module
from lfr_report.ssl import train
from lfr_report.ssl.autoencoder import train_autoencoder
from lfr_report.ssl.clip import train_clip
from lfr_report.ssl.train import _save_atomic, train_loop

CPU = torch.device("cpu")
CLASSES = ("bar", "ring", "dot")


def _images(n: int, seed: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8)
    return images, torch.randint(0, 3, (n,), generator=g)


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def _recorded_loops(monkeypatch, module) -> list:
    """Each ``train_loop`` result of ``module``'s calls: where a call started and what it trained."""
    results = []

    def recorded(*args, **kwargs):
        results.append(train_loop(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(module, "train_loop", recorded)
    return results


def _autoencoder(epochs, checkpoint=None):
    images, _ = _images(40, 0)  # 40 images, batches of 16: the last one holds 8
    test, _ = _images(16, 1)
    torch.manual_seed(0)
    model = ConvAutoencoder(1, 8, (4, 8))
    logged = []
    loss = train_autoencoder(model, images, test, epochs=epochs, batch_size=16, lr=1e-2, noise_std=0.3,
                             generator=torch.Generator().manual_seed(2), device=CPU,
                             log=lambda *entry: logged.append(entry), progress=False, checkpoint=checkpoint)  # fmt: skip
    return model, logged, loss


def test_a_killed_autoencoder_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    checkpoint = tmp_path / "ae.pt"
    loops = _recorded_loops(monkeypatch, autoencoder_module)
    model, logged, loss = _autoencoder(2)
    _autoencoder(1, checkpoint)  # "killed" after epoch 1: only the checkpoint survives
    resumed, resumed_logged, resumed_loss = _autoencoder(2, checkpoint)
    assert [(r.resumed_from_epoch, r.epochs_run) for r in loops] == [(0, 2), (0, 1), (1, 1)]  # it did resume
    _assert_same_weights(model, resumed)
    assert resumed_logged == logged and resumed_loss == loss  # the replayed epoch 1 included, float for float
    assert [(name, step) for name, _, step in logged] == [("train_loss", 1), ("test_loss", 1), ("train_loss", 2),
                                                          ("test_loss", 2)]  # fmt: skip


def _clip(epochs, checkpoint=None):
    images, labels = _images(48, 0)
    test = _images(16, 1)
    vocabulary = Vocabulary(CLASSES)
    torch.manual_seed(0)
    model = ImageTextModel(build_encoder("convnet", 1, 8, 8, (4, 8)), TextEncoder(len(vocabulary), vocabulary.max_length,
                           8), 8, dropout=0.5)  # fmt: skip
    logged = []
    loss = train_clip(model, images, labels, caption_tokens(vocabulary, CLASSES), mean=(0.5,), std=(0.25,),
                      epochs=epochs, batch_size=16, lr=1e-3, temperature=0.1, generator=torch.Generator().manual_seed(3),
                      device=CPU, log=lambda *entry: logged.append(entry), test=test, progress=False,
                      checkpoint=checkpoint)  # fmt: skip
    return model, logged, loss


def test_a_killed_image_text_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """Dropout draws from the global generator: the checkpoint restores it too."""
    checkpoint = tmp_path / "clip.pt"
    loops = _recorded_loops(monkeypatch, clip_module)
    model, logged, loss = _clip(2)
    after = torch.get_rng_state()
    _clip(1, checkpoint)
    resumed, resumed_logged, resumed_loss = _clip(2, checkpoint)
    assert [(r.resumed_from_epoch, r.epochs_run) for r in loops] == [(0, 2), (0, 1), (1, 1)]  # it did resume
    _assert_same_weights(model, resumed)
    assert resumed_logged == logged and resumed_loss == loss
    assert torch.equal(torch.get_rng_state(), after)
    assert {name for name, _, _ in logged} == {"train_loss", "train_loss_image_to_text", "train_loss_text_to_image",
                                               "train_top1", "test_loss", "test_top1"}  # fmt: skip


class Killed(Exception):
    pass


def _fine_tune(checkpoint=None, kill_after=None, **overrides):
    """Fine-tune a small encoder; with ``kill_after`` it is "killed" at that forward pass."""
    images, labels = _images(40, 0)
    test_images, test_labels = _images(16, 1)
    torch.manual_seed(5)
    encoder = build_encoder("convnet", 1, 8, 8, (4, 8))
    calls = []

    def kill(module, args):
        calls.append(1)
        if len(calls) > kill_after:
            raise Killed

    if kill_after is not None:
        encoder.register_forward_pre_hook(kill)
    settings = {"epochs": 3, "min_steps": 8, "batch_size": 16, "lr": 0.05, "seed": 4, **overrides}
    result = fine_tune(encoder, images, labels, test_images, test_labels, mean=(0.5,), std=(0.25,), progress=False,
                       checkpoint=checkpoint, **settings)  # fmt: skip
    return encoder, result


@pytest.mark.parametrize("frozen", [False, True])
def test_a_killed_fine_tuning_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, frozen):
    """Two whole batches a pass, eight steps: four passes, the last one stopped by the step
    count; killed in the third pass, it resumes after the second."""
    monkeypatch.setattr(finetune, "SAVE_EVERY_S", 0.0)
    loops = _recorded_loops(monkeypatch, finetune)
    checkpoint, whole = tmp_path / "finetune.pt", tmp_path / "uninterrupted.pt"
    encoder, result = _fine_tune(whole, frozen=frozen)
    after = torch.get_rng_state()
    with pytest.raises(Killed):
        _fine_tune(checkpoint, kill_after=5, frozen=frozen)
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 2
    resumed, resumed_result = _fine_tune(checkpoint, frozen=frozen)
    assert [(r.resumed_from_epoch, r.epochs_run) for r in loops] == [(0, 4), (2, 2)]  # the killed call returned none
    _assert_same_weights(encoder, resumed)
    assert resumed_result == result and result.steps == 8
    assert torch.equal(torch.get_rng_state(), after)
    ours, theirs = (torch.load(path, weights_only=False) for path in (checkpoint, whole))
    for name, weights in theirs["model"].items():  # the linear head too
        assert torch.equal(ours["model"][name], weights), name
    assert ours["history"] == theirs["history"]
    # Finished: the checkpoint holds the result, and a call finding it neither trains nor scores.
    again, again_result = _fine_tune(checkpoint, kill_after=0, frozen=frozen)
    _assert_same_weights(encoder, again)
    assert again_result == result and torch.equal(torch.get_rng_state(), after)
    assert "optimizer" not in torch.load(checkpoint, weights_only=False)


def test_the_loop_logs_epoch_means_weighted_by_images_or_by_batches():
    """Five items in batches of two: sizes 2, 2, 1 in either order."""
    weight = torch.nn.Parameter(torch.zeros(()))
    for mean, size in (("images", (2 * 2 + 2 * 2 + 1 * 1) / 5), ("batches", (2 + 2 + 1) / 3)):
        logged: list[tuple] = []
        result = train_loop(
            lambda batch, index: {"loss": weight * 0 + batch.mean(), "size": torch.tensor(float(len(batch)))},
            torch.arange(5.0), modules={}, optimizer=torch.optim.SGD([weight], lr=0.1), epochs=1, batch_size=2,
            device=CPU, generator=torch.Generator().manual_seed(0), log=lambda *entry, logged=logged: logged.append(entry),
            log_every=None, epoch_mean=mean, drop_last=False, progress=False,
        )  # fmt: skip
        assert result.steps == 3
        assert [(name, step) for name, _, step in logged] == [("train_loss", 1), ("train_size", 1)]
        assert logged[1][1] == pytest.approx(size)
        if mean == "images":
            assert logged[0][1] == pytest.approx(2.0)  # the mean of 0..4, each item once


def test_the_loop_stops_at_max_steps_and_logs_every_batch_at_its_step():
    weight = torch.nn.Parameter(torch.ones(()))
    logged = []
    result = train_loop(
        lambda batch, index: {"loss": (weight * batch).sum()}, torch.ones(10), modules={},
        optimizer=torch.optim.SGD([weight], lr=0.1), epochs=3, batch_size=4, device=CPU,
        generator=torch.Generator().manual_seed(0), log=lambda *entry: logged.append(entry), log_every=3,
        max_steps=5, evaluate=lambda epoch: {"loss": float(epoch)}, progress=False,
    )  # fmt: skip
    assert result.steps == 5 and result.last_test_terms == {"loss": 3.0}
    assert [step for name, _, step in logged if name == "train_loss"] == [0, 1, 2, 3, 4]
    assert [step for name, _, step in logged if name == "test_loss"] == [2, 4, 5]


def test_checkpoint_writers_never_share_a_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "writers" / "ck.pt"
    temporaries = []
    replace = train.os.replace
    monkeypatch.setattr(train.os, "replace", lambda src, dst: (temporaries.append(src), replace(src, dst)))
    writers = [threading.Thread(target=lambda k=k: [_save_atomic({"k": k, "i": i}, path) for i in range(5)])
               for k in range(2)]  # fmt: skip
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert len(set(temporaries)) == 10  # every write its own temporary file, beside the checkpoint
    assert torch.load(path, weights_only=False)["i"] == 4
    assert [p.name for p in path.parent.iterdir()] == ["ck.pt"]


def test_normalise_is_the_one_formula_for_uint8_and_unit_float_images():
    images, _ = _images(4, 0)
    images = images.expand(4, 3, 8, 8).contiguous()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    shape = (1, 3, 1, 1)
    expected = (images.float() / 255 - torch.tensor(mean).view(shape)) / torch.tensor(std).view(shape)
    assert torch.equal(normalise(images, mean, std), expected)
    assert torch.equal(normalise(images.float() / 255, mean, std), expected)
    last = normalise(images, mean, std, torch.channels_last)
    assert last.is_contiguous(memory_format=torch.channels_last) and torch.equal(last, expected)


def test_a_run_with_parts_keeps_one_checkpoint_per_part_and_removes_them_all():
    config, other = {"seed": 0, "device": "cpu", "fractions": [0.01, 1.0]}, {"seed": 1}
    whole = train.checkpoint_path("finetune", config)
    parts = [train.checkpoint_path("finetune", config, f"{key}-seed0") for key in ("1pct", "100pct")]
    assert whole == train.checkpoint_path("finetune", {**config, "device": "cuda"})  # resumable on another device
    assert len({whole, *parts}) == 3 and all(p.parent == whole.parent for p in parts)
    kept = train.checkpoint_path("finetune", other, "1pct-seed0")
    for path in (whole, *parts, kept):
        _save_atomic({}, path)
    (whole.parent / f".{parts[0].name}.x1y2.tmp").touch()  # what a kill mid-write leaves
    train.remove_checkpoints("finetune", config)
    assert [p.name for p in whole.parent.iterdir() if p.suffix != ".lock"] == [kept.name]  # another config's stays


@pytest.mark.parametrize("log_every", [3, None])
def test_the_loop_stops_at_the_first_non_finite_term_naming_epoch_step_and_term(log_every):
    from lfr_report.errors import Diverged

    model = torch.nn.Linear(4, 1)
    data = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))

    def step(batch, index):
        loss = model(batch).pow(2).mean()
        spread = loss * 0 + (float("nan") if model.weight.abs().max() > 50 else 1.0)  # a term that turns nan
        return {"loss": loss, "spread": spread}

    with torch.no_grad():
        model.weight.fill_(100.0)
    where = "step 1" if log_every else "its mean over the epoch"
    with pytest.raises(Diverged, match=rf"training diverged at epoch 1, {where}: spread became nan"):
        train_loop(step, data, modules={"model": model}, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                   epochs=2, batch_size=8, device=torch.device("cpu"), generator=torch.Generator().manual_seed(0),
                   log_every=log_every, progress=False)  # fmt: skip

    model = torch.nn.Linear(4, 1)
    huge = torch.optim.SGD(model.parameters(), lr=1e38)
    with pytest.raises(Diverged, match="training diverged at epoch 1"):
        train_loop(lambda batch, index: {"loss": model(batch).pow(2).mean()}, data, modules={"model": model},
                   optimizer=huge, epochs=3, batch_size=8, device=torch.device("cpu"),
                   generator=torch.Generator().manual_seed(0), log_every=None, progress=False)  # fmt: skip


def test_a_diverging_vicreg_run_is_one_line_and_failed(isolated):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "experiments" / "vicreg.py"
    done = subprocess.run([sys.executable, str(script), "with", "smoke", "lr=1e30"], capture_output=True, text=True,
                          cwd=isolated, timeout=300)  # fmt: skip
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert "training diverged at epoch 1, step" in line and "became" in line, done.stderr[-1500:]
    statuses = [json.loads(p.read_text())["status"] for p in (isolated / "runs").glob("*/run.json")]
    assert statuses == ["FAILED"]
