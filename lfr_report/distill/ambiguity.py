"""The ambiguity between the inner learner's weights and D that the project text points out
(w_base D = w_base Q Q^-1 D), measured for this inner learner, and the canonical form of D
that the symmetry which does hold calls for.

For the tied autoencoder (``lfr_report.distill.inner``) the hidden units see D only through
W^T x, so any invertible Q with D -> Q D, W -> Q^-T W leaves them unchanged. The inner loss
also has the reconstruction term (a - x) / sigma^2 + W h, which is unchanged in norm only
when Q is orthogonal (then W -> Q W, a -> Q a, and the residual turns by Q). So:

* **orthogonal Q**: the inner problem on Q D is the inner problem on D turned; its loss at
  (Q W, b, Q a) equals the loss at (W, b, a);
* **a general invertible Q**: the hidden units agree, the inner loss does not;
* **protocol (b)** refits w on the transformed set and then reads features of the *real*
  images, which nobody turned: the real data fixes the pixel basis, so the outer problem
  does not have the text's ambiguity. What it does have is the order of D's images (D is
  a set: every loss is a mean over its rows), hence ``canonical_order``.

``check`` measures all of these on a run's final D; the distillation experiment logs them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lfr_report.distill.inner import AEParams, features
from lfr_report.distill.solvers import InnerSpec, Task

AMBIGUITY_METRICS = ("ambiguity_hidden_invertible", "ambiguity_inner_orthogonal", "ambiguity_inner_invertible",
                     "ambiguity_inner_permuted", "ambiguity_retrained_rotated", "ambiguity_retrained_permuted")  # fmt: skip


def random_orthogonal(d: int, generator: torch.Generator) -> Tensor:
    """A Haar-random orthogonal d x d matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def random_invertible(d: int, generator: torch.Generator) -> Tensor:
    """An orthogonal matrix times a diagonal scaling in [0.5, 2]: invertible, well conditioned, not orthogonal."""
    scales = 0.5 + 1.5 * torch.rand(d, generator=generator, dtype=torch.float64)
    return random_orthogonal(d, generator) * scales


def transformed(D: Tensor, w: AEParams, Q: Tensor) -> tuple[Tensor, AEParams]:
    """x -> Q x for every image (row) of D, with W -> Q^-T W (so W^T x is unchanged) and a -> Q a."""
    Qf = Q.to(D.dtype)
    W = torch.linalg.solve(Q.T, w.W.double()).to(D.dtype)
    return D @ Qf.T, AEParams(W, w.b, w.a @ Qf.T)


def relative_change(before: Tensor, after: Tensor) -> float:
    return float((after - before).abs().max() / before.abs().max().clamp_min(1e-12))


def check(spec: InnerSpec, D: Tensor, w: AEParams, task: Task, protocol_b, seed: int = 0) -> dict[str, float]:
    """The measured ambiguity of a final (D, w): relative changes of the hidden units and of
    the inner loss under an invertible, an orthogonal Q and a permutation of D's images, and
    protocol (b) (``protocol_b(D, seed)`` -> accuracy) on the turned and on the permuted D."""
    generator = torch.Generator().manual_seed(seed)
    d = D.shape[1]
    D, w = D.detach(), AEParams(*(p.detach() for p in w))
    loss = spec.loss_at(w, D, D)
    turned, turned_w = transformed(D, w, random_orthogonal(d, generator))
    bent, bent_w = transformed(D, w, random_invertible(d, generator))
    order = torch.randperm(len(D), generator=generator)
    return {
        "ambiguity_hidden_invertible": relative_change(features(w, D), features(bent_w, bent)),
        "ambiguity_inner_orthogonal": relative_change(loss, spec.loss_at(turned_w, turned, turned)),
        "ambiguity_inner_invertible": relative_change(loss, spec.loss_at(bent_w, bent, bent)),
        "ambiguity_inner_permuted": relative_change(loss, spec.loss_at(w, D[order], D[order])),
        "ambiguity_retrained_rotated": protocol_b(turned, seed),
        "ambiguity_retrained_permuted": protocol_b(D[order], seed),
    }


def canonical_order(D: np.ndarray) -> np.ndarray:
    """An order of D's images that does not depend on the order they were stored in: by their
    score on D's first principal component, the component's sign chosen so that the largest
    score is positive (an eigenvector's sign is arbitrary). Show and compare D in this order."""
    centred = D - D.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    scores = centred @ vt[0]
    if -scores.min() > scores.max():
        scores = -scores
    return np.argsort(-scores, kind="stable")
