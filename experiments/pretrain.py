"""Unsupervised pretraining of the baseline's encoder, for the pretraining report (the second
example report of the lfr2024 seed): a denoising autoencoder or Deep InfoMax.

    python experiments/pretrain.py                       # default: Deep InfoMax on Fashion-MNIST, CPU
    python experiments/pretrain.py with dae              # the denoising autoencoder
    python experiments/pretrain.py with no_local         # DIM ablations: beta = 0 (no_local), alpha = 0 (no_global)
    python experiments/pretrain.py with full             # the example's: Tiny ImageNet, classified on CIFAR-10 (a GPU)
    python experiments/pretrain.py with smoke            # seconds, synthetic data (tests)

The encoder is the baseline's: four 3x3 conv blocks (each after the first halving the
side) and fully connected layers to a 64-dimensional representation (``convnet`` in
``lfr_report.models``, so ``finetune.py`` fine-tunes it as it does the SimCLR encoders).
The training split's images are used without their labels.

* ``method=dae``: Gaussian noise of std ``noise_std`` is added to the normalised image,
  the encoder and a mirrored decoder (``lfr_report.models.decoder``) reconstruct the
  clean image, and the loss is the binary cross-entropy between the two (the example's
  "cross-entropy between the reconstructed input and the original input").
* ``method=dim``: Deep InfoMax (``lfr_report.ssl.dim``): the JSD estimates of the global
  and local mutual information between the representation y and the output M of conv
  block ``feature_block``, and the prior matching of sigmoid(y) to a uniform prior by an
  adversarial discriminator, weighted ``alpha``, ``beta``, ``gamma``.

Logged per batch: ``train_loss`` and (DIM) ``train_global_mi``, ``train_local_mi``,
``train_prior``; the same on the test split after each epoch (``test_*``). Stored:
``encoder.pt`` and ``test_embedding_2d.npz`` (PCA and t-SNE of test representations).
A killed run resumes from its last epoch when the same command is run again.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call

from lfr_report import names
from lfr_report.data import normalise, subset_index
from lfr_report.data.normalise import to_float
from lfr_report.errors import ConfigError
from lfr_report.evaluate import encode
from lfr_report.evaluate.embed import pca_2d, tsne_2d
from lfr_report.experiment import (
    at_least,
    checks,
    dataset,
    integer,
    list_of,
    new_experiment,
    non_negative,
    one_of,
    optional,
    positive,
    positive_int,
    record_data,
    save_encoder,
)
from lfr_report.ingredients import load_splits
from lfr_report.models import build_encoder, encoder_arch
from lfr_report.models.decoder import ConvNetDecoder
from lfr_report.ssl.dim import GlobalCritic, LocalCritic, PriorDiscriminator, dim_objective, jsd_mi, prior_value
from lfr_report.ssl.train import checkpoint_path, remove_checkpoints, train_loop
from lfr_report.tracking import run_commandline
from lfr_report.tracking.artifacts import add_npz_artifact
from lfr_report.tracking.context import begin_run
from lfr_report.tracking.observers import run_location

METHODS = ("dim", "dae")

# data.train_size: the unlabelled training images (CPU scale; `full` takes the whole split)
ex = new_experiment("pretrain", data={"name": "fashion_mnist", "train_size": 10000, "test_size": None})


# fmt: off
@ex.config
def config():
    scale = "default"  # smoke | default | full
    seed = 0  # seeds the weights, the batches, the noise and the prior samples
    device = "auto"  # auto | cpu | cuda
    method = "dim"  # dim: Deep InfoMax | dae: denoising autoencoder
    widths = [16, 32, 64, 128]  # the baseline's four 3x3 conv layers (channels; each after the first halves the side)
    encoder_dim = 64  # the high-level representation y (the example's 64 dimensions)
    dim_epochs = 6  # DIM's passes over the unlabelled images (the example: 20, see `full`)
    dae_epochs = 3  # the dAE's (the example: 10, half of DIM's)
    batch_size = 128  # the example's
    lr = 1e-4  # Adam, for the encoder, the decoder or critics, and the prior discriminator (the example's)
    noise_std = 1.0  # dae: std of the Gaussian noise on the normalised image (the example's N(0, I))
    alpha = 0.5  # dim: weight of the global MI term (the example's)
    beta = 1.0  # dim: weight of the local MI term (the example's)
    gamma = 0.1  # dim: weight of the prior-matching term (the example's)
    feature_block = 2  # dim: M is the output of this conv block (0-based; 7x7 for 28x28 images)
    critic_width = 128  # dim: width of the global and local critics' embeddings (encode-and-dot-product; the paper: 512)
    prior_widths = [1000, 200]  # dim: hidden layers of the prior discriminator (the paper's)
    tsne_points = 2000  # test representations embedded with t-SNE for the report
    log_every = 20  # batches between metric flushes (per-batch values are all kept)
    transfer = None  # the labelled data set finetune.py trains the classifiers on: None for the pretraining set's own


@ex.named_config
def smoke():
    scale = "smoke"  # seconds on a CPU: synthetic gratings, a narrow encoder, one epoch
    data = {"name": "synthetic", "train_size": 512, "test_size": 256}
    widths = [8, 16, 16, 16]
    encoder_dim = 16
    dim_epochs = 1
    dae_epochs = 1
    batch_size = 64
    critic_width = 32
    prior_widths = [32]
    tsne_points = 200


@ex.named_config
def dae():
    method = "dae"  # the denoising autoencoder


@ex.named_config
def no_local():
    beta = 0.0  # ablation: the global MI term alone (with prior matching)


@ex.named_config
def no_global():
    alpha = 0.0  # ablation: the local MI term alone (with prior matching)


@ex.named_config
def full():
    scale = "full"  # the example's setting: pretraining on Tiny ImageNet's 100,000 images, classifiers on CIFAR-10
    data = {"name": "tiny_imagenet", "train_size": None}
    transfer = "cifar10"
    widths = [32, 64, 128, 256]
    dim_epochs = 20
    dae_epochs = 10
    critic_width = 512


@ex.named_config
def rehearsal():
    # `with full rehearsal`: every setting of full with only its sizes shrunk, minutes on a CPU (a check before a GPU run)
    scale = "full rehearsal"
    data = {"train_size": 128, "test_size": 64}
    dim_epochs = 1
    dae_epochs = 1
    batch_size = 32
    tsne_points = 64
# fmt: on


def _block_in_range(config):
    if config["method"] == "dim" and not 0 <= config["feature_block"] < len(config["widths"]):
        raise ConfigError(f"feature_block must be in [0, {len(config['widths']) - 1}] (a conv block of widths), "
                          f"got {config['feature_block']!r}")  # fmt: skip


checks(ex, {
    "method": one_of(*METHODS), "widths": list_of(positive_int), "encoder_dim": positive_int,
    "dim_epochs": positive_int, "dae_epochs": positive_int,
    "batch_size": at_least(2, "the MI estimators need negatives"), "lr": positive, "noise_std": non_negative,
    "alpha": non_negative, "beta": non_negative, "gamma": non_negative, "feature_block": integer,
    "critic_width": positive_int, "prior_widths": list_of(positive_int), "tsne_points": positive_int,
    "log_every": positive_int, "transfer": optional(dataset),
}, extra=_block_in_range)  # fmt: skip


def dae_step(encoder, decoder, spec, noise_std, generator):
    """The denoising autoencoder's step: reconstruct the clean image from the noisy normalised one."""

    def step(images, index):
        clean = to_float(images)
        noisy = normalise(images, spec.mean, spec.std)
        noisy = noisy + noise_std * torch.randn(noisy.shape, generator=generator, device=noisy.device)
        return {"loss": F.binary_cross_entropy(decoder(encoder(noisy)), clean)}

    return step


def dim_step(encoder, critics, discriminator, spec, feature_block, alpha, beta, gamma, generator):
    """Deep InfoMax's step. One backward pass trains both players: the encoder and critics
    minimise the objective, whose prior term sees the discriminator with its weights
    detached, while ``d_loss - d_loss.detach()`` (zero in value) gives the discriminator,
    alone, the gradient of ``-V`` on the detached representation."""

    def step(images, index):
        feature_map, y = encoder.with_feature_map(normalise(images, spec.mean, spec.std), feature_block)
        squashed = torch.sigmoid(y)
        prior = torch.rand(y.shape, generator=generator, device=y.device)
        fixed = {name: p.detach() for name, p in discriminator.named_parameters()}
        fixed_d = lambda v: functional_call(discriminator, fixed, (v,))  # noqa: E731
        terms = dim_objective(jsd_mi(critics["global"](feature_map, y)), jsd_mi(critics["local"](feature_map, y)),
                              prior_value(fixed_d(prior), fixed_d(squashed)), alpha, beta, gamma)  # fmt: skip
        d_loss = -prior_value(discriminator(prior), discriminator(squashed.detach()))
        return {**terms._asdict(), "loss": terms.loss + (d_loss - d_loss.detach())}

    return step


@ex.main
def main(_run, _config, _seed, device, method, widths, encoder_dim, dim_epochs, dae_epochs, batch_size, lr, noise_std, alpha, beta,
         gamma, feature_block, critic_width, prior_widths, tsne_points, log_every):  # fmt: skip
    device = begin_run(_run, _seed, device)
    train, test = load_splits(_config["seed"])
    spec = train.spec
    record_data(_run, spec, data_source=train.source, train_images=len(train), test_images=len(test))
    if len(test) < batch_size:
        raise ConfigError(f"the test split has {len(test)} images, fewer than one batch of {batch_size}")

    arch = encoder_arch("convnet", spec.channels, encoder_dim, spec.shape[-1], widths, "flatten")
    encoder = build_encoder(**arch).to(device)
    noise = torch.Generator(device=device).manual_seed(_seed + 1)
    if method == "dae":
        decoder = ConvNetDecoder(spec.channels, encoder_dim, widths, spec.shape[-1]).to(device)
        modules = {"encoder": encoder, "decoder": decoder}
        step = dae_step(encoder, decoder, spec, noise_std, noise)
    else:
        with torch.no_grad():
            channels, side = encoder.with_feature_map(torch.zeros(2, *spec.shape, device=device), feature_block)[
                0
            ].shape[1:3]
        _run.info["feature_map"] = [channels, side, side]
        critics = torch.nn.ModuleDict({"global": GlobalCritic(channels, side, encoder_dim, critic_width),
                                       "local": LocalCritic(channels, encoder_dim, critic_width)}).to(device)  # fmt: skip
        discriminator = PriorDiscriminator(encoder_dim, tuple(prior_widths)).to(device)
        modules = {"encoder": encoder, "critics": critics, "discriminator": discriminator}
        step = dim_step(encoder, critics, discriminator, spec, feature_block, alpha, beta, gamma, noise)
    epochs = dim_epochs if method == "dim" else dae_epochs
    optimizer = torch.optim.Adam([p for m in modules.values() for p in m.parameters()], lr=lr)
    _run.info["parameters"] = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}

    def evaluate(epoch: int) -> dict[str, float]:
        """The objective's terms on the test split (whole batches, fixed noise), in eval mode."""
        for module in modules.values():
            module.eval()
        fixed = torch.Generator(device=device).manual_seed(_seed + 2)
        test_step = (dae_step(encoder, decoder, spec, noise_std, fixed) if method == "dae" else
                     dim_step(encoder, critics, discriminator, spec, feature_block, alpha, beta, gamma, fixed))  # fmt: skip
        sums: dict[str, float] = {}
        batches = len(test) // batch_size
        with torch.no_grad():
            for b in range(batches):
                terms = test_step(test.images[b * batch_size : (b + 1) * batch_size].to(device), None)
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + float(value) / batches
        return sums

    checkpoint = checkpoint_path("pretrain", _config)
    result = train_loop(step, train.images, modules=modules, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                        device=device, generator=torch.Generator(device=device).manual_seed(_seed),
                        log=_run.log_scalar, evaluate=evaluate, checkpoint=checkpoint, log_every=log_every,
                        streams={"noise": noise})  # fmt: skip
    _run.info["resumed_from_epoch"] = result.resumed_from_epoch

    save_encoder(_run, encoder, arch)
    features = encode(encoder, test.images, spec.mean, spec.std, device)
    shown = subset_index(len(test), tsne_points, _seed)
    add_npz_artifact(_run, names.TEST_EMBEDDING_2D, pca=pca_2d(features[shown]), tsne=tsne_2d(features[shown], seed=_seed),
                     labels=test.labels[shown], index=shown)  # fmt: skip
    remove_checkpoints("pretrain", _config)
    what = {"dae": "denoising autoencoder", "dim": f"Deep InfoMax (alpha {alpha}, beta {beta}, gamma {gamma})"}[method]
    final = result.last_test_terms
    print(f"pretrain run {_run._id}: {what} on {len(train)} {train.name} images, test loss {final['loss']:.4f}; "
          f"encoder and t-SNE in {run_location(_run)}")  # fmt: skip
    return {f"test_{name}": value for name, value in final.items()}


if __name__ == "__main__":
    run_commandline(ex)
