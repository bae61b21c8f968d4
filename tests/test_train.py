"""The training loop: it logs every term, and a resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import torch

from lfr_report.data import Augment, AugmentParams, load_dataset
from lfr_report.models import Projector, build_encoder
from lfr_report.ssl import VICRegLoss
from lfr_report.ssl.train import fit, on_device_if_fits, train_step

DEVICE = torch.device("cpu")


def _setup(seed=0):
    torch.manual_seed(seed)
    data = load_dataset("synthetic", "train").subset(256)
    test = load_dataset("synthetic", "test").subset(64)
    augment = Augment(AugmentParams(), data.spec.mean, data.spec.std)
    encoder, projector = build_encoder("convnet", 1, 8, widths=(4, 8)), Projector(8, 16)
    optimizer = torch.optim.Adam([*encoder.parameters(), *projector.parameters()], lr=1e-3)
    return data, test, augment, encoder, projector, optimizer


def _fit(epochs, checkpoint=None, seed=0):
    data, test, augment, encoder, projector, optimizer = _setup(seed)
    logged = []
    result = fit(
        encoder=encoder, projector=projector, objective=VICRegLoss(),
        make_views=lambda batch, index, g: (augment(batch, g), augment(batch, g)),
        train_images=data.images, test_images=test.images, optimizer=optimizer, epochs=epochs, batch_size=64,
        device=DEVICE, log=lambda name, value, step: logged.append((name, step, value)),
        generator=torch.Generator().manual_seed(seed), checkpoint=checkpoint, log_every=3, progress=False,
    )  # fmt: skip
    return result, logged, encoder


def test_every_term_is_logged_per_batch_and_per_epoch():
    result, logged, _ = _fit(2)
    names = {name for name, _, _ in logged}
    assert names == {
        f"{split}_{t}" for split in ("train", "test") for t in ("loss", "invariance", "variance", "covariance")
    }
    train_steps = [step for name, step, _ in logged if name == "train_loss"]
    assert train_steps == list(range(8))  # 256 images / 64 per batch = 4 batches, 2 epochs
    assert [step for name, step, _ in logged if name == "test_loss"] == [4, 8]
    assert result.steps == 8 and result.resumed_from_epoch == 0


def test_resumed_training_matches_uninterrupted_training(tmp_path):
    checkpoint = tmp_path / "ck.pt"
    whole, whole_logged, uninterrupted = _fit(2)
    _fit(1, checkpoint)  # "killed" after epoch 1: only the checkpoint survives
    result, logged, resumed = _fit(2, checkpoint)
    assert result.resumed_from_epoch == 1 and result.epochs_run == 1
    # The replayed history holds epoch 1, so the run's curve is whole, and equal float for float.
    assert [step for name, step, _ in logged if name == "train_loss"] == list(range(8))
    assert logged == whole_logged and result.last_test_terms == whole.last_test_terms
    for a, b in zip(uninterrupted.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_write_is_atomic(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    checkpoint = folder / "ck.pt"
    _fit(1, checkpoint)
    assert checkpoint.is_file() and torch.load(checkpoint, weights_only=False)["epoch"] == 1
    assert [p.name for p in folder.iterdir()] == ["ck.pt"]  # no temporary (.ck.pt.*.tmp) left beside it
    assert torch.load(checkpoint, weights_only=False)["epoch"] == 1


def test_amp_is_a_no_op_on_the_cpu_and_the_step_lowers_the_loss():
    """``amp`` only changes CUDA runs; on the CPU both settings take the identical step."""
    states = []
    for amp in (False, True):
        data, _, augment, encoder, projector, optimizer = _setup()
        g = torch.Generator().manual_seed(0)
        view_a, view_b = augment(data.images[:64], g), augment(data.images[:64], g)
        losses = [
            train_step(encoder, projector, VICRegLoss(), optimizer, view_a, view_b, amp).loss.item() for _ in range(5)
        ]
        assert losses[-1] < losses[0]
        states.append(encoder.state_dict())
    for a, b in zip(*states, strict=True):
        torch.testing.assert_close(states[0][a], states[1][b])


def test_data_stays_where_it_is_on_the_cpu():
    images = torch.zeros(10, 1, 4, 4, dtype=torch.uint8)
    assert on_device_if_fits(images, DEVICE) is images


def test_a_checkpoint_cut_short_is_named_set_aside_and_the_run_starts_fresh(tmp_path, capsys):
    checkpoint = tmp_path / "ck.pt"
    _, whole_logged, _ = _fit(2)
    _fit(1, checkpoint)
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])  # a disk that filled, a copy that stopped
    result, logged, _ = _fit(2, checkpoint)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"checkpoint {checkpoint} is damaged (") and "this run starts fresh" in line
    assert result.resumed_from_epoch == 0 and logged == whole_logged  # the uninterrupted run's numbers
    assert (tmp_path / "ck.pt.damaged").read_bytes() == data[: len(data) // 2]  # kept for a look, not deleted
