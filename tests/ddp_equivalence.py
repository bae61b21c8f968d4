"""Run by tests/test_distributed.py under ``torchrun --standalone --nproc_per_node=2``: one
step of VICReg and of SimCLR under DDP against the same step in one process with the whole
batch, then a few steps of ``fit`` and the parameters of every rank. Rank 0 writes what it
measured to the JSON file named on the command line; the test judges it.

The networks are the real small ConvNet and projector, in eval mode for the one-step
comparison: on CPUs each rank's batch norms would see only its share of the batch
(SyncBatchNorm is CUDA only), which is a different model, not a wrong gradient.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from lfr_report import distributed
from lfr_report.models import Projector, build_encoder
from lfr_report.ssl import SimCLRLoss, VICRegLoss
from lfr_report.ssl.train import TwoViews, fit

BATCH = 16  # the global batch


def networks() -> TwoViews:
    torch.manual_seed(0)
    return TwoViews(build_encoder("convnet", 1, 8, 8, (4, 8), "flatten"), Projector(8, 16)).double()


def one_step(objective) -> dict[str, float]:
    """Loss and gradients of one process with the whole batch against DDP with shares of it
    (in float64, so that any difference beyond rounding is a real one)."""
    generator = torch.Generator().manual_seed(1)
    view_a, view_b = torch.randn(2, BATCH, 1, 8, 8, generator=generator, dtype=torch.float64)
    alone = networks().eval()
    whole = objective(*alone(view_a, view_b))
    whole.loss.backward()

    pair = networks().eval()
    ddp = distributed.wrap(pair, torch.device("cpu"))
    mine = distributed.share(BATCH)
    terms = objective(*ddp(view_a[mine], view_b[mine]), global_batch=True)
    terms.loss.backward()
    logged = distributed.mean_over_ranks(torch.stack(list(terms)))  # what train_loop logs
    gradient_error = max((p.grad - q.grad).abs().max().item() for p, q in
                         zip(pair.parameters(), alone.parameters(), strict=True))  # fmt: skip
    return {
        "loss_error": (logged[0] - whole.loss).abs().item(),
        "terms_error": (logged - torch.stack(list(whole))).abs().max().item(),
        "gradient_error": gradient_error,
        "gradient_scale": max(q.grad.abs().max().item() for q in alone.parameters()),
    }


def several_steps(folder: Path) -> dict:
    """``fit`` over three global batches a epoch (batch norms training, each rank its own
    noise): how far apart the ranks' parameters are after two epochs, what was logged, and
    how far a run stopped after one epoch and resumed from its checkpoint ends from an
    uninterrupted one."""
    images = torch.randint(0, 256, (3 * BATCH, 1, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))

    def views(batch, index, generator):
        x = batch.float() / 255
        return x + 0.1 * torch.randn(x.shape, generator=generator), x + 0.1 * torch.randn(x.shape, generator=generator)

    def train(epochs: int, checkpoint: Path) -> tuple[torch.Tensor, list, object]:
        pair, logged = networks().float(), []
        result = fit(encoder=pair.encoder, projector=pair.projector, objective=VICRegLoss(), make_views=views,
            train_images=images, test_images=images[:BATCH], optimizer=torch.optim.Adam(pair.parameters(), lr=1e-2),
            epochs=epochs, batch_size=BATCH, device=torch.device("cpu"), log=lambda *m: logged.append(m),
            generator=torch.Generator().manual_seed(0), checkpoint=checkpoint, log_every=2, progress=False)  # fmt: skip
        return torch.cat([p.detach().flatten() for p in pair.parameters()]), logged, result

    whole, logged, _ = train(2, folder / "whole.pt")
    train(1, folder / "stopped.pt")
    resumed, _, resumed_result = train(2, folder / "stopped.pt")
    return {
        "parameter_spread": max(
            (whole - other).abs().max().item() for other in distributed.objects_of_all_ranks(whole)
        ),
        "resume_error": (whole - resumed).abs().max().item(),
        "resumed": [resumed_result.resumed_from_epoch, resumed_result.epochs_run],  # [1, 1]: epoch 2 only
        "train_loss_steps": [at for name, _, at in logged if name == "train_loss"],
        "test_logged": sorted({name for name, _, _ in logged if name.startswith("test_")}),
    }


class _GatherWithoutAllReduce(torch.autograd.Function):
    """The all-gather done wrong (the negative control): backward keeps only this rank's own gradient."""

    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(distributed.size())]
        torch.distributed.all_gather(parts, x)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        n = len(grad) // distributed.size()
        return grad[distributed.rank() * n : (distributed.rank() + 1) * n]


def main(out: Path) -> None:
    distributed.start(torch.device("cpu"))
    result = {"world_size": distributed.size(), "vicreg": one_step(VICRegLoss()), "simclr": one_step(SimCLRLoss())}
    right, distributed.gather_batch = distributed.gather_batch, _GatherWithoutAllReduce.apply
    result["vicreg_without_all_reduce"] = one_step(VICRegLoss())
    distributed.gather_batch = right
    result["fit"] = several_steps(out.parent)
    if distributed.is_main():
        out.write_text(json.dumps(result))
    distributed.end()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
