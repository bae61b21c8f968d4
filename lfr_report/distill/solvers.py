"""Three solvers for the bilevel problem of unsupervised dataset distillation.

    min_D  sum_j min_{head_j} L_out^j(head_j o f_{w*})   s.t.  w* = argmin_w L_inner(w; D)

D is a small learned set of unlabeled images, f_w the inner learner's features
(``lfr_report.distill.inner``), L_out^j the cross-entropy of a linear head on real labelled
data of task j. The heads are trained by Adam steps on L_out alongside D (not in closed
form). Each solver's ``step`` takes one real batch per task and updates D, w and the heads:

* ``penalty`` (quadratic penalty): minimise L_out(w, heads) + rho/2 ||grad_w L_inner(w; D)||^2
  jointly over D, w and the heads; rho grows geometrically over the epochs, so w is pulled
  ever closer to a stationary point of the inner problem on D.
* ``value`` (optimal-value reformulation): minimise L_out + rho [L_inner(w; D) - L_inner(w'; D)],
  where w' tracks min_w' L_inner(w'; D) by a few warm-started Adam steps per outer step
  (w' is a constant in the outer gradient). Whenever w itself scores lower than w', w'
  jumps to w: without that, the outer step learns to move D where the lagging w' is bad,
  and the bracket runs off to minus infinity (seen: -260 after 200 steps).
* ``implicit`` (implicit differentiation): w is the inner solution itself, refreshed by
  warm-started inner steps on D; the hypergradient is
  dL_out/dD = -(d^2 L_inner / dD dw) H^{-1} grad_w L_out with H = grad^2_w L_inner (+ damping),
  H^{-1} applied by conjugate gradient on Hessian-vector products (autograd through the
  analytic inner gradient).

Each may add the assignment's diversity term -lambda ||D - mean(D)||^2 (here divided by
|D|, so lambda does not scale with the size of D), and a pretrained prior's negative
log-likelihood of D, weight * mean_n -log p_psi(d_n) / d (``lfr_report.distill.prior``). Divergence (a NaN or inf in D, w or a
loss term) raises ``Diverged`` naming the term.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfr_report import names
from lfr_report.distill.inner import (
    AEParams,
    features,
    grad_norm2,
    init_params,
    inner_grad,
    inner_loss,
    stacked_features,
)
from lfr_report.distill.prior import GaussianPrior
from lfr_report.errors import Diverged, LfrError

SOLVERS = ("penalty", "value", "implicit")


@dataclass
class Task:
    """One outer task: real labelled training and test data (images flattened, in [0, 1])."""

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    source: str = ""  # where the images were read from, for the run record

    @property
    def classes(self) -> int:
        return int(max(self.train_y.max(), self.test_y.max())) + 1


@dataclass
class InnerSpec:
    """The inner learner: hidden units, sigma^2, weight decay, and which score-matching loss:
    the course's (noise 0, no trace), denoising (noise > 0) or exact (the trace term)."""

    hidden: int = 64
    sigma2: float = 1.0
    weight_decay: float = 1e-4
    noise: float = 0.0  # std of the DSM corruption; 0 is the course's score matching
    trace: bool = False  # Hyvarinen's trace term: exact score matching, proper without noise
    layers: int = 1  # tied autoencoders stacked, each fitted on the features of the one below

    def corrupt(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The input at which the hidden units are computed: x itself, or x + noise for DSM."""
        if self.noise <= 0:
            return x
        return x + self.noise * torch.randn(x.shape, generator=generator, device=x.device)

    def loss_at(self, w: AEParams, x: Tensor, x_in: Tensor) -> Tensor:
        """L_inner(w; x) with the hidden units at ``x_in`` (one ``corrupt`` draw shared by several calls)."""
        return inner_loss(w, x, x_in, self.sigma2, self.weight_decay, self.trace)

    def grad_at(self, w: AEParams, x: Tensor, x_in: Tensor) -> AEParams:
        """The analytic grad_w L_inner(w; x) with the hidden units at ``x_in``."""
        return inner_grad(w, x, x_in, self.sigma2, self.weight_decay, self.trace)

    def loss(self, w: AEParams, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.loss_at(w, x, self.corrupt(x, generator))

    def grad(self, w: AEParams, x: Tensor, generator: torch.Generator | None = None) -> AEParams:
        return self.grad_at(w, x, self.corrupt(x, generator))


def _leaf(params: AEParams) -> AEParams:
    return AEParams(*(p.detach().clone().requires_grad_(True) for p in params))


def fit_inner(spec: InnerSpec, x: Tensor, steps: int, lr: float = 1e-3, start: AEParams | None = None,
              seed: int = 0, batch_size: int = 500) -> AEParams:  # fmt: skip
    """min_w L_inner(w; x) by Adam with the analytic gradient, from ``start`` or a fresh init;
    full-batch up to ``batch_size`` images (every distilled set), random batches of it beyond."""
    generator = torch.Generator().manual_seed(seed)
    w = _leaf(start if start is not None else init_params(x.shape[1], spec.hidden, generator))
    optimizer = torch.optim.Adam(w, lr=lr)
    for _ in range(steps):
        batch = x if len(x) <= batch_size else x[torch.randint(len(x), (batch_size,), generator=generator)]
        inner_step(spec, w, batch, optimizer, generator)
    return AEParams(*(p.detach() for p in w))


def inner_step(spec: InnerSpec, w: AEParams, x: Tensor, optimizer: torch.optim.Optimizer,
               generator: torch.Generator | None = None) -> None:  # fmt: skip
    """One optimiser step on L_inner(w; x), its gradient from the analytic formula, not autograd."""
    with torch.no_grad():
        grads = spec.grad(w, x, generator)
    for p, g in zip(w, grads, strict=True):
        p.grad = g
    optimizer.step()


def conjugate_gradient(hvp, b: list[Tensor], iterations: int, damping: float) -> list[Tensor]:
    """Solve (H + damping I) v = b for v by ``iterations`` steps of conjugate gradient."""

    def apply(v):
        return [h + damping * x for h, x in zip(hvp(v), v, strict=True)]

    def dot(u, v):
        return sum((x * y).sum() for x, y in zip(u, v, strict=True))

    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    p = [t.clone() for t in b]
    rr = dot(r, r)
    for _ in range(iterations):
        if rr.item() < 1e-20:
            break
        hp = apply(p)
        alpha = rr / dot(p, hp)
        x = [xi + alpha * pi for xi, pi in zip(x, p, strict=True)]
        r = [ri - alpha * hi for ri, hi in zip(r, hp, strict=True)]
        rr_new = dot(r, r)
        p = [ri + (rr_new / rr) * pi for ri, pi in zip(r, p, strict=True)]
        rr = rr_new
    return x


def hypergradient(spec: InnerSpec, w: AEParams, D: Tensor, grad_w_out: Sequence[Tensor], cg_iterations: int,
                  damping: float, generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    """dL_out/dD by the implicit function theorem at an (approximate) inner minimum w of L_inner(.; D):
    -(d/dD) <grad_w L_inner(w; D), v> with v = (H + damping I)^{-1} grad_w L_out."""
    w = _leaf(w)
    D = D.detach().requires_grad_(True)
    x_in = spec.corrupt(D, generator)  # one noise draw for H and the mixed term alike

    def inner_gradient():
        return spec.grad_at(w, D, x_in)

    def hvp(v):
        g = inner_gradient()
        inner = sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True))
        return torch.autograd.grad(inner, w)

    v = conjugate_gradient(hvp, [g.detach() for g in grad_w_out], cg_iterations, damping)
    g = inner_gradient()
    mixed = torch.autograd.grad(sum((gi * vi).sum() for gi, vi in zip(g, v, strict=True)), D)[0]
    return -mixed


def diversity(D: Tensor) -> Tensor:
    """||D - mean(D)||^2 / |D|: the spread the diversity term rewards."""
    return (D - D.mean(0)).pow(2).sum() / len(D)


class Distiller:
    """D, the inner weights w and one linear head per task, and the solver's step; see the module docstring."""

    def __init__(self, solver: str, spec: InnerSpec, tasks: Sequence[Task], size: int, *, lr: float = 1e-4,
                 init_high: float = 1 / 16, diversity_weight: float = 0.0, rho: float = 1.0,
                 inner_steps: int = 5, inner_lr: float = 1e-3, cg_iterations: int = 10, damping: float = 1e-2,
                 prior: GaussianPrior | None = None, prior_weight: float = 0.0, seed: int = 0) -> None:  # fmt: skip
        if solver not in SOLVERS:
            raise LfrError(f"unknown solver {solver!r}; use one of {', '.join(SOLVERS)}")
        self.solver, self.spec, self.tasks = solver, spec, list(tasks)
        self.generator = torch.Generator().manual_seed(seed)
        d = tasks[0].train_x.shape[1]
        self.D = (torch.rand(size, d, generator=self.generator) * init_high).requires_grad_(True)  # the course's init
        self.w = _leaf(init_params(d, spec.hidden, self.generator))
        # Layers above the first (spec.layers > 1): each a tied autoencoder of the features below, meta-learned with w.
        self.upper = [_leaf(init_params(spec.hidden, spec.hidden, self.generator)) for _ in range(spec.layers - 1)]
        if self.upper and solver == "implicit":
            raise LfrError("several layers (layers > 1) work with the penalty and value solvers, not implicit")
        torch.manual_seed(seed)
        self.heads = nn.ModuleList(nn.Linear(spec.hidden, task.classes) for task in tasks)
        self.diversity_weight, self.rho = diversity_weight, rho
        self.prior, self.prior_weight = prior, prior_weight
        self.inner_steps, self.inner_lr = inner_steps, inner_lr
        self.cg_iterations, self.damping = cg_iterations, damping
        trained = [self.D, *self.heads.parameters()] + ([] if solver == "implicit" else list(self.w))
        trained += [p for layer in self.upper for p in layer]
        self.optimizer = torch.optim.Adam(trained, lr=lr)
        if solver == "implicit":  # w follows the inner problem, by its own Adam steps
            self.inner_optimizer = torch.optim.Adam(self.w, lr=inner_lr)
        if solver == "value":  # w' tracks min L_inner(.; D)
            self.w_min = _leaf(self.w)
            self.inner_optimizer = torch.optim.Adam(self.w_min, lr=inner_lr)
            self.upper_min = [_leaf(layer) for layer in self.upper]
            self.upper_optimizers = [torch.optim.Adam(layer, lr=inner_lr) for layer in self.upper_min]

    def outer_loss(self, w: AEParams, batches: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
        return sum(F.cross_entropy(head(stacked_features([w, *self.upper], x)), y)
                   for head, (x, y) in zip(self.heads, batches, strict=True))  # fmt: skip

    def inputs_of_upper(self) -> list[Tensor]:
        """What each layer above the first sees: the features of D through the layers below it."""
        inputs, below = [], self.D
        for lower in [self.w, *self.upper][:-1]:
            below = features(lower, below)
            inputs.append(below)
        return inputs

    def _gap(self, w: AEParams, w_min: list[Tensor], x: Tensor) -> Tensor:
        """L_inner(w; x) - L_inner(w'; x) >= 0 for one layer, w' jumping to w when w scores lower."""
        x_in = self.spec.corrupt(x, self.generator)  # one noise draw for both losses (DSM)
        here = self.spec.loss_at(w, x, x_in)
        best = self.spec.loss_at(AEParams(*(p.detach() for p in w_min)), x, x_in)
        if here.item() < best.item():  # w is the better estimate of the inner minimum: track from there
            with torch.no_grad():
                for p, q in zip(w_min, w, strict=True):
                    p.copy_(q)
            best = here.detach()
        return (here - best).clamp_min(0)  # >= 0 by construction: w' is the lower of the two

    def _inner_steps(self, params: AEParams, optimizer: torch.optim.Optimizer, x: Tensor | None = None) -> None:
        """``inner_steps`` optimiser steps on L_inner(params; x), x being D (detached) unless given."""
        x = (self.D if x is None else x).detach()
        for _ in range(self.inner_steps):
            inner_step(self.spec, params, x, optimizer, self.generator)

    def step(self, batches: Sequence[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        """One outer step on one real batch per task; returns the terms (tensors) for logging."""
        terms: dict[str, Tensor] = {}
        if self.solver == "implicit":
            self._inner_steps(self.w, self.inner_optimizer)
        outer = self.outer_loss(self.w, batches)
        loss = outer
        if self.solver == "penalty":
            penalty = grad_norm2(self.spec.grad(self.w, self.D, self.generator))
            for layer, below in zip(self.upper, self.inputs_of_upper(), strict=True):  # layer-wise inner problems
                penalty = penalty + grad_norm2(self.spec.grad(layer, below, self.generator))
            loss = loss + 0.5 * self.rho * penalty
            terms["penalty"] = penalty
        elif self.solver == "value":
            self._inner_steps(self.w_min, self.inner_optimizer)
            gap = self._gap(self.w, self.w_min, self.D)
            for layer, layer_min, optimizer, below in zip(self.upper, self.upper_min, self.upper_optimizers,
                                                          self.inputs_of_upper(), strict=True):  # fmt: skip
                self._inner_steps(layer_min, optimizer, below)
                gap = gap + self._gap(layer, layer_min, below)
            loss = loss + self.rho * gap
            terms["penalty"] = gap
        if self.diversity_weight > 0:
            spread = diversity(self.D)
            loss = loss - self.diversity_weight * spread
            terms["diversity"] = spread
        if self.prior is not None and self.prior_weight > 0:
            nll = self.prior.nll_per_pixel(self.D)
            loss = loss + self.prior_weight * nll
            terms[names.PRIOR_NLL] = nll
        self.optimizer.zero_grad(set_to_none=True)
        if self.solver == "implicit":
            grads = torch.autograd.grad(loss, [*self.w, self.D, *self.heads.parameters()], allow_unused=True)
            grad_w = [torch.zeros_like(p) if g is None else g for p, g in zip(self.w, grads[:3], strict=True)]
            grad_d, grad_heads = grads[3], grads[4:]  # a (the visible bias) does not reach the outer loss
            hyper = hypergradient(self.spec, self.w, self.D, grad_w, self.cg_iterations, self.damping, self.generator)
            self.D.grad = hyper + (grad_d if grad_d is not None else 0)
            for p, g in zip(self.heads.parameters(), grad_heads, strict=True):
                p.grad = g
            terms["penalty"] = grad_norm2(self.spec.grad(self.w, self.D.detach())).detach()
        else:
            loss.backward()
        self.optimizer.step()
        terms["outer_loss"] = outer.detach()
        return {name: value.detach() for name, value in terms.items()}

    def check_finite(self, epoch: int, terms: dict[str, float]) -> None:
        """Raise ``Diverged`` naming the first non-finite term, D or w."""
        for name, value in terms.items():
            if not math.isfinite(value):
                raise Diverged(f"distillation diverged at epoch {epoch}: {name} became {value}")
        upper = [(f"w{i}.{n}", t) for i, layer in enumerate(self.upper, 2) for n, t in zip("Wba", layer, strict=True)]
        for name, tensor in (("D", self.D), ("w.W", self.w.W), ("w.b", self.w.b), ("w.a", self.w.a), *upper):
            if not torch.isfinite(tensor).all():
                raise Diverged(f"distillation diverged at epoch {epoch}: {name} has non-finite entries")

    @torch.no_grad()
    def course_accuracy(self) -> list[float]:
        """Protocol (a): each task's head on the jointly trained features, real test accuracy."""
        return [float((head(stacked_features([self.w, *self.upper], t.test_x)).argmax(1) == t.test_y).float().mean())
                for head, t in zip(self.heads, self.tasks, strict=True)]  # fmt: skip
