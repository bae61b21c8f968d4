"""An experiment whose rank 1 fails in its second training step, for tests/test_distributed.py
(``torchrun --standalone --nproc_per_node=2 tests/ddp_failing.py``): rank 0 is then waiting in
that step's all-reduce, and the run it records must say what went wrong on rank 1."""

from __future__ import annotations

import torch

from lfr_report import distributed
from lfr_report.experiment import new_experiment
from lfr_report.models import Projector, build_encoder
from lfr_report.ssl import VICRegLoss
from lfr_report.ssl.train import fit
from lfr_report.tracking import run_commandline
from lfr_report.tracking.context import begin_run

ex = new_experiment("ddp_failing", data=False, distributed=True)
ex.add_config(seed=0, batch_size=8)


@ex.main
def main(_run, _seed, batch_size):
    device = begin_run(_run, _seed, "cpu")
    calls = []

    def views(batch, index, generator):
        calls.append(1)
        if distributed.rank() == 1 and len(calls) == 2:
            raise RuntimeError("planted failure: rank 1 could not make its views")
        x = batch.float() / 255
        return x + 0.1 * torch.randn(x.shape, generator=generator), x + 0.1 * torch.randn(x.shape, generator=generator)

    encoder, projector = build_encoder("convnet", 1, 8, 8, (4,), "flatten"), Projector(8, 8)
    images = torch.randint(0, 256, (4 * batch_size, 1, 8, 8), dtype=torch.uint8)
    fit(encoder=encoder, projector=projector, objective=VICRegLoss(), make_views=views, train_images=images,
        test_images=images, optimizer=torch.optim.Adam([*encoder.parameters(), *projector.parameters()]), epochs=1,
        batch_size=batch_size, device=device, log=_run.log_scalar, generator=torch.Generator().manual_seed(_seed),
        progress=False)  # fmt: skip


if __name__ == "__main__":
    run_commandline(ex)
