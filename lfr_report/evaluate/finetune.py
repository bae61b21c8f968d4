"""Fine-tuning with few labels: the encoder and a linear head trained together on a
stratified fraction of a labelled training set, scored on the whole test set.

This is the semi-supervised protocol of the SimCLR example report (its Table 2): SGD with
momentum 0.9, weight decay 1e-4, batch 128, learning rate 0.1 multiplied by 0.1 at 100/180
and 150/180 of training. The same function trains from scratch (a freshly initialised
encoder of the same architecture) and, on 100% of the labels, gives the fully supervised
baseline of its Table 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfr_report import distributed
from lfr_report.data.normalise import normalise
from lfr_report.evaluate.linear_probe import accuracy
from lfr_report.models.heads import classifier_head
from lfr_report.ssl.train import _save_atomic, load_checkpoint, set_rng_state, train_loop

MILESTONES = (100 / 180, 150 / 180)  # the example's epochs 100 and 150 of 180, as fractions of training
SAVE_EVERY_S = 30.0  # checkpoint at the first pass to end this long after the last write (a 1% pass is one step)


def stratified_subset(labels: Tensor, fraction: float, seed: int) -> Tensor:
    """Sorted indices of ``fraction`` of each class (at least one image per class), drawn
    with ``seed``: the same seed gives the same labelled set."""
    if not 0 < fraction <= 1:
        raise ValueError(f"a label fraction must be in (0, 1], got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().flatten()
        keep = max(1, round(fraction * len(members)))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:keep]])
    return torch.cat(chosen).sort().values


def calibrate_batch_norm(encoder: nn.Module, images: Tensor, mean: tuple[float, ...], std: tuple[float, ...],
                         device: torch.device | str = "cpu", batch_size: int = 256) -> None:  # fmt: skip
    """Set every batch norm's running mean and variance to the statistics of ``images``
    (averaged over batches), the weights untouched: a randomly initialised encoder's batch
    norms hold mean 0 and variance 1, which shrink its output to almost nothing in eval mode,
    so a frozen random encoder needs this before a head is trained on it."""
    norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    encoder.to(device).train()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            encoder(normalise(images[start : start + batch_size].to(device), mean, std))
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    encoder.eval()


@dataclass(frozen=True)
class FineTuneResult:
    test_accuracy: float  # fraction in [0, 1], on the whole test set
    train_accuracy: float  # on the labelled images it was trained on
    labelled: int  # how many labelled images
    steps: int  # SGD steps taken
    final_loss: float  # mean cross-entropy of the last epoch


def fine_tune(
    encoder: nn.Module,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    epochs: int,
    min_steps: int = 0,
    batch_size: int = 128,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    frozen: bool = False,
    optimizer: str = "sgd",
    head_layers: int = 1,
    head_hidden: int = 200,
    progress: bool = True,
    checkpoint: Path | None = None,
) -> FineTuneResult:
    """Train ``encoder`` (in place) with a new head (``nn.Linear(encoder.dim, classes)``, or
    ``head_layers`` fully connected layers of width ``head_hidden``: ``models.classifier_head``)
    on uint8 ``train_images`` with cross-entropy; score the pair on ``test_images``.

    Training runs ``epochs`` passes or ``min_steps`` steps, whichever is more, so a 1%
    label fraction still gets a useful number of updates. Images are normalised with the
    pretraining data set's per-channel ``mean`` and ``std``. ``frozen=True`` trains the
    head alone on the encoder's fixed output (in eval mode): a (linear, with one layer)
    classifier on a frozen representation. ``optimizer="adam"`` swaps SGD for Adam at ``lr`` (momentum
    unused), with the same step schedule.

    Every step takes a whole batch (the images left over rotate, as the order is reshuffled
    each epoch): a last batch of a few images, with batch norm in training mode and a
    learning rate of 0.1, can throw a small labelled set's training off. Measured: one seed
    of ResNet-20 on 5% of the MNIST digits (400 images, a 16-image last batch) ended at
    57% test accuracy with it and 92% without.

    With ``checkpoint`` (one file per call: per label fraction and seed) training saves at
    the end of a pass every ``SAVE_EVERY_S`` seconds and after the last, and resumes from the
    last one saved (see ``lfr_report.ssl.train.train_loop``). Once finished the file keeps the
    weights and the result: a call finding it returns that result without training or scoring.

    Under torchrun the model trains as one DistributedDataParallel model, each rank on its
    share of every batch (a batch smaller than ``batch_size`` is rounded down to a multiple
    of the number of processes); every rank scores the trained model.
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"unknown optimizer {optimizer!r}; use sgd or adam")
    device = torch.device(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    classes = int(max(train_labels.max(), test_labels.max())) + 1
    torch.manual_seed(seed)
    head = classifier_head(encoder.dim, classes, head_layers, head_hidden)
    model = nn.Sequential(encoder, head).to(device, memory_format=layout)
    state = load_checkpoint(checkpoint)
    if state is not None and "result" in state:  # finished by an earlier call: its weights, random state and result
        model.load_state_dict(state["model"])
        set_rng_state(state["rng"], device)
        model.eval()
        return FineTuneResult(**state["result"])
    encoder.requires_grad_(not frozen)
    trained = head.parameters() if frozen else model.parameters()
    if optimizer == "adam":
        step_rule: torch.optim.Optimizer = torch.optim.Adam(trained, lr=lr, weight_decay=weight_decay)
    else:
        step_rule = torch.optim.SGD(trained, lr=lr, momentum=momentum, weight_decay=weight_decay)
    n = len(train_images)
    batch = min(batch_size, n)
    batch = max(distributed.size(), batch - batch % distributed.size())  # under torchrun: an equal share per rank
    train_model = distributed.wrap(model, device)  # model itself outside torchrun
    per_epoch = n // batch  # whole batches only: see the docstring
    steps = max(epochs * per_epoch, min_steps)
    schedule = torch.optim.lr_scheduler.MultiStepLR(step_rule, [round(m * steps) for m in MILESTONES], gamma=0.1)
    generator = torch.Generator().manual_seed(seed)

    def train_mode() -> None:
        model.train()
        if frozen:
            encoder.eval()  # fixed batch-norm statistics: the representation does not change

    def step(batch: tuple[Tensor, Tensor], index: Tensor) -> dict[str, Tensor]:
        images, labels = batch
        return {"loss": F.cross_entropy(train_model(normalise(images, mean, std, layout)), labels)}

    # Counted in steps (a last pass may stop early), nothing logged: the result is the final pass's mean loss.
    trained_loop = train_loop(
        step, (train_images.to(device), train_labels.to(device)), modules={"model": model}, optimizer=step_rule,
        epochs=math.ceil(steps / per_epoch), batch_size=batch, device=device, generator=generator,
        checkpoint=checkpoint, log_every=None, epoch_mean="images", max_steps=steps, scheduler=schedule,
        train_mode=train_mode, save_every_s=SAVE_EVERY_S, progress=progress,
    )  # fmt: skip
    encoder.requires_grad_(True)
    model.eval()

    def score(x: Tensor, y: Tensor) -> float:
        return accuracy(lambda b: model(normalise(b, mean, std, layout)), x.to(device), y.to(device), 512)

    with torch.no_grad():
        result = FineTuneResult(score(test_images, test_labels), score(train_images, train_labels), n, steps,
                                trained_loop.last_train_terms.get("loss", 0.0))  # fmt: skip
    if (
        checkpoint is not None and distributed.is_main()
    ):  # training is over: the weights and the result are kept, not the optimiser
        state = {k: v for k, v in (load_checkpoint(checkpoint) or {}).items() if k not in ("optimizer", "scheduler")}
        _save_atomic({**state, "result": asdict(result)}, checkpoint)
    return result
