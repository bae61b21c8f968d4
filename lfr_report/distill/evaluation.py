"""How good a distilled set D is, under the assignment's two protocols and against baselines.

* protocol (a), the course's: the head trained jointly during distillation, on the
  jointly trained features (``Distiller.course_accuracy``);
* protocol (b), the honest bilevel one: retrain w from scratch on D alone, freeze it, fit a
  linear probe on the real training set's features, report real test accuracy
  (``retrained_accuracy``). The same function scores the baselines: a random real subset
  of |D| images, the full real training set, and random untrained features.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lfr_report.distill.inner import AEParams, init_params, reconstruction_error, stacked_features
from lfr_report.distill.solvers import InnerSpec, Task, fit_inner
from lfr_report.evaluate import linear_probe


def probe_accuracy(w: AEParams | list[AEParams], task: Task, seed: int = 0) -> float:
    """Real test accuracy of a linear probe on the frozen (top layer's) features of ``w``."""
    with torch.no_grad():
        train, test = stacked_features(w, task.train_x), stacked_features(w, task.test_x)
    return linear_probe(train, task.train_y, test, task.test_y, seed=seed).test_accuracy


def retrained_accuracy(spec: InnerSpec, D: Tensor, task: Task, steps: int, lr: float = 1e-3,
                       seed: int = 0) -> tuple[float, float, AEParams]:  # fmt: skip
    """Protocol (b): w fitted from scratch on ``D`` alone; its probe accuracy and
    reconstruction error on the real test set, and w itself. With several layers each is
    fitted on the features of the fitted layers below (the error is the first layer's)."""
    w = fit_inner(spec, D.detach(), steps, lr, seed=seed)
    if spec.layers == 1:
        return probe_accuracy(w, task, seed), float(reconstruction_error(w, task.test_x, spec.sigma2)), w
    stack = [w]
    for _ in range(spec.layers - 1):
        with torch.no_grad():
            below = stacked_features(stack, D.detach())
        stack.append(fit_inner(spec, below, steps, lr, seed=seed))
    return probe_accuracy(stack, task, seed), float(reconstruction_error(w, task.test_x, spec.sigma2)), w


def supervised_accuracy(spec: InnerSpec, task: Task, epochs: int, batch_size: int, lr: float, seed: int = 0) -> float:
    """The ceiling of protocol (a): the same features s(W^T x + b) and linear head trained
    jointly on the real labelled data with nothing tying them to D (a one-hidden-layer net)."""
    import torch.nn.functional as F
    from torch import nn

    generator = torch.Generator().manual_seed(seed)
    w = init_params(task.train_x.shape[1], spec.hidden, generator)
    W, b = w.W.requires_grad_(), w.b.requires_grad_()
    torch.manual_seed(seed)
    head = nn.Linear(spec.hidden, task.classes)
    optimizer = torch.optim.Adam([W, b, *head.parameters()], lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(task.train_x), generator=generator)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            pick = order[i : i + batch_size]
            loss = F.cross_entropy(head(torch.sigmoid(task.train_x[pick] @ W + b)), task.train_y[pick])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return float((head(torch.sigmoid(task.test_x @ W + b)).argmax(1) == task.test_y).float().mean())


def random_features(spec: InnerSpec, d: int, seed: int = 0) -> AEParams | list[AEParams]:
    """Untrained features: W with standard deviation 1/sqrt(d), so W^T x is of order one
    (with several layers, a stack of such layers)."""
    generator = torch.Generator().manual_seed(seed)
    first = init_params(d, spec.hidden, generator, scale=d**-0.5)
    if spec.layers == 1:
        return first
    return [first, *(init_params(spec.hidden, spec.hidden, generator, scale=spec.hidden**-0.5)
                     for _ in range(spec.layers - 1))]  # fmt: skip


def random_subset(x: Tensor, size: int, seed: int = 0) -> Tensor:
    """``size`` real images drawn without replacement."""
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:size]]
