"""The inner learner of unsupervised dataset distillation: a tied-weight autoencoder, i.e.
the Gaussian-Bernoulli RBM of the assignment (lfr2024 project), fitted by score matching.

Model (x in R^d, K hidden units, W = (w_1 .. w_K) in R^{d x K}, b in R^K, a in R^d):

    log p(x) = -||x - a||^2 / (2 sigma^2) + sum_k S(w_k^T x + b_k)        (S' = s, the sigmoid)
    score    psi(x) = grad_x log p(x) = (a - x) / sigma^2 + W s(W^T x + b)
    features s(W^T x + b);  reconstruction AE(x) = a + sigma^2 W s(W^T x + b)  (where psi = 0)

* **score matching** (the course's loss): residual r(x) = psi(x), inner loss
  ``L = 1/(2N) sum_n ||r(x_n)||^2``. Without the trace term of Hyvarinen's objective (or
  noise) this is *not* a proper scoring rule: it is minimised by making psi vanish on the
  data, i.e. by a perfect autoencoder, not by the data density;
* **denoising score matching** (DSM, a proper scoring rule for the noisy density): the
  score is evaluated at x~ = x + noise e (e ~ N(0, noise^2 I)) and regressed on the score
  of the noise kernel, -(x~ - x)/noise^2; with noise^2 = sigma^2 the residual is
  r = (a - x) / sigma^2 + W s(W^T x~ + b): exactly a tied-weight denoising autoencoder.

* **exact score matching** (Hyvarinen's objective, ``trace=True``, proper without noise):
  the same loss plus the trace term 1/N sum_n tr(grad_x psi(x_n)), which for this model is
  -d / sigma^2 + 1/N sum_n sum_k ||w_k||^2 s'(w_k^T x_n + b_k).

**Several layers** (``InnerSpec.layers``): tied autoencoders stacked, layer l fitted by the same
loss on the features of layer l - 1 (layer-wise inner problems), the top layer's features
read by the head (``stacked_features``).

All are ``inner_loss(params, x, x_in, trace=...)`` with the hidden units computed at ``x_in``
(``x_in = x`` for plain and exact score matching). ``inner_grad`` is its gradient in (W, b, a)
written out as the assignment's hints derive it, vectorised over the batch; the quadratic
penalty of the distillation solvers is the squared norm of that gradient, and autograd
differentiates *through* it (to D and w) without a second-order trick.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class AEParams(NamedTuple):
    """Weights of the tied autoencoder: W (d, K), b (K,), a (d,)."""

    W: Tensor
    b: Tensor
    a: Tensor


def init_params(d: int, hidden: int, generator: torch.Generator | None = None, scale: float = 0.01) -> AEParams:
    """Small random W (Gaussian, std ``scale``), zero biases."""
    W = torch.randn(d, hidden, generator=generator) * scale
    return AEParams(W, torch.zeros(hidden), torch.zeros(d))


def features(params: AEParams, x: Tensor) -> Tensor:
    """Hidden activations s(W^T x + b) of a batch ``x`` (N, d): (N, K)."""
    return torch.sigmoid(x @ params.W + params.b)


def stacked_features(layers: AEParams | list[AEParams], x: Tensor) -> Tensor:
    """The top layer's features of a stack of tied autoencoders, each fed the features of the
    one below (one layer: ``features``)."""
    for params in [layers] if isinstance(layers, AEParams) else layers:
        x = features(params, x)
    return x


def reconstruct(params: AEParams, x: Tensor, sigma2: float = 1.0) -> Tensor:
    """AE(x) = a + sigma^2 W s(W^T x + b): the point where the model's score vanishes."""
    return params.a + sigma2 * features(params, x) @ params.W.T


def residual(params: AEParams, x: Tensor, x_in: Tensor | None = None, sigma2: float = 1.0) -> Tensor:
    """r = (a - x) / sigma^2 + W s(W^T x_in + b), one row per sample."""
    x_in = x if x_in is None else x_in
    return (params.a - x) / sigma2 + features(params, x_in) @ params.W.T


def trace_term(params: AEParams, x: Tensor, sigma2: float = 1.0) -> Tensor:
    """1/N sum_n tr(grad_x psi(x_n)) = -d / sigma^2 + 1/N sum_n sum_k ||w_k||^2 s'(w_k^T x_n + b_k),
    the term that makes score matching a proper scoring rule (Hyvarinen 2005)."""
    h = features(params, x)
    return -x.shape[1] / sigma2 + ((h * (1 - h)).mean(0) * params.W.pow(2).sum(0)).sum()


def inner_loss(params: AEParams, x: Tensor, x_in: Tensor | None = None, sigma2: float = 1.0,
               weight_decay: float = 0.0, trace: bool = False) -> Tensor:  # fmt: skip
    """1/(2N) sum_n ||r_n||^2 (+ the trace term) (+ weight_decay/2 ||W||^2); see the module docstring."""
    r = residual(params, x, x_in, sigma2)
    loss = 0.5 * r.pow(2).sum() / len(x) + 0.5 * weight_decay * params.W.pow(2).sum()
    return loss + trace_term(params, x, sigma2) if trace else loss


def inner_grad(params: AEParams, x: Tensor, x_in: Tensor | None = None, sigma2: float = 1.0,
               weight_decay: float = 0.0, trace: bool = False) -> AEParams:  # fmt: skip
    """grad of ``inner_loss`` in (W, b, a), written out (the assignment's hints):

        h = s(W^T x_in + b),  h' = s'(W^T x_in + b) = h (1 - h),  r as in ``residual``
        grad_W = 1/N [ sum_n r_n h_n^T + x_in_n (W^T r_n * h'_n)^T ]   (+ weight_decay W)
        grad_b = 1/N sum_n W^T r_n * h'_n
        grad_a = 1/N sum_n r_n / sigma^2

    The k-th column of grad_W is the hint's (s(w_k^T x + b_k) 1 + s'(w_k^T x + b_k) w_k x^T) r,
    summed over the batch. With ``trace`` (x_in = x), h'' = h' (1 - 2h) and c_k = ||w_k||^2:

        grad_W[:, k] += 1/N sum_n [ 2 w_k h'_nk + c_k h''_nk x_n ]
        grad_b[k]    += 1/N sum_n c_k h''_nk

    Built from differentiable tensor operations, so autograd can differentiate the
    returned gradient again (to the data or to the weights).
    """
    x_in = x if x_in is None else x_in
    n = len(x)
    h = features(params, x_in)
    dh = h * (1 - h)
    r = (params.a - x) / sigma2 + h @ params.W.T  # (N, d)
    back = (r @ params.W) * dh  # (N, K): W^T r * s'
    grad_W = (r.T @ h + x_in.T @ back) / n + weight_decay * params.W
    grad_b = back.sum(0) / n
    if trace:
        curve = dh * (1 - 2 * h) * params.W.pow(2).sum(0)  # (N, K): c_k h''_nk
        grad_W = grad_W + 2 * params.W * dh.mean(0) + x_in.T @ curve / n
        grad_b = grad_b + curve.mean(0)
    return AEParams(grad_W, grad_b, r.sum(0) / (n * sigma2))


def grad_norm2(grad: AEParams) -> Tensor:
    """||grad_w L_inner||^2 summed over W, b and a: the quadratic penalty's core."""
    return sum(g.pow(2).sum() for g in grad)


def reconstruction_error(params: AEParams, x: Tensor, sigma2: float = 1.0) -> Tensor:
    """||X - AE(X)|| per image: the root of the mean over images of ||x - AE(x)||^2 (the
    assignment's table column; its normalisation is not stated, this is ours)."""
    return (x - reconstruct(params, x, sigma2)).pow(2).sum(1).mean().sqrt()
