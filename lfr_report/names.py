"""The names runs record and reports read, written once: experiments log and store under
these names, report builders look them up under the same ones.

Metrics of the training loops are ``train_<term>`` per batch and ``test_<term>`` per
epoch (``train_metric``, ``test_metric``), where the terms are the objective's own
(``lfr_report.ssl.vicreg.TERMS`` for VICReg). Metrics logged once per seed use the seed's
position as their step, so ``Metric.mean_std`` gives the report's mean ± std.
"""

from __future__ import annotations

# --- artifacts -------------------------------------------------------------------------
ENCODER = "encoder.pt"  # {"arch": build_encoder kwargs, "state_dict": weights}
TEST_REPRESENTATIONS = "test_representations.npz"  # features, labels
TEST_EMBEDDING_2D = "test_embedding_2d.npz"  # pca, tsne, labels, index
VIEWS = "views.npz"  # images, view_1, view_2: training images and two augmented views of each (uint8)
EIGENMAP = "eigenmap.npz"  # embedding, labels, index, probe_scored
EIGENMAP_TSNE = "eigenmap_tsne.npz"  # tsne, labels
RETRIEVAL = "retrieval.npz"  # downstream retrieval grids; the image-text model's text-to-image results
ANOMALY = "anomaly.npz"  # scores, labels, fpr, tpr, top, top_images, top_is_anomaly
CLUSTERING = "clustering.npz"  # tsne, assignments, labels, centres_tsne
RECONSTRUCTIONS = "reconstructions.npz"  # images, inputs, outputs, labels
AUTOENCODER = "autoencoder.pt"
CLIP_MODEL = "clip.pt"
DISTILLED = "distilled.npz"  # D, W, snapshots, snapshot_epochs

# --- metrics ---------------------------------------------------------------------------
PROBE_TEST_ACCURACY = "probe_test_accuracy"
PROBE_TRAIN_ACCURACY = "probe_train_accuracy"
PIXELS_PROBE_TEST_ACCURACY = "pixels_probe_test_accuracy"
PIXELS_PROBE_TRAIN_ACCURACY = "pixels_probe_train_accuracy"
TRANSFER_PROBE_TEST_ACCURACY = (
    "transfer_probe_test_accuracy"  # SimCLR: linear evaluation on the transfer data, per seed
)
ANOMALY_AUC = "anomaly_auc"
SILHOUETTE = "silhouette"
ADJUSTED_RAND = "adjusted_rand"
ZERO_SHOT_ACCURACY = "zero_shot_accuracy"
RETRIEVAL_PRECISION = "retrieval_precision"
CLIP_PROBE_ACCURACY = "probe_accuracy"  # the image-text model's linear probe, per seed
KNN_TEST_ACCURACY = "knn_test_accuracy"  # the weighted kNN classifier on frozen representations (methods)


def train_metric(term: str) -> str:
    """A training loop's per-batch value of ``term`` (``loss`` or one of the objective's terms)."""
    return f"train_{term}"


def test_metric(term: str) -> str:
    """A training loop's value of ``term`` on the test split after each epoch."""
    return f"test_{term}"


def classifier_accuracy(kind: str) -> str:
    """Problem 7.1's linear classifier ``kind`` (frozen, joint, random), per seed."""
    return f"accuracy_{kind}"


def fraction_key(fraction: float) -> str:
    """0.01 -> '1pct': a label fraction's part of a metric name."""
    return f"{100 * fraction:g}pct"


def fraction_accuracy(fraction: float) -> str:
    """Fine-tuning's test accuracy with ``fraction`` of the labels, per seed."""
    return f"test_accuracy_{fraction_key(fraction)}"


def fraction_loss(fraction: float) -> str:
    """Fine-tuning's final training loss with ``fraction`` of the labels, per seed."""
    return f"train_loss_{fraction_key(fraction)}"


# distillation (``tag`` is "" for one task, "_<task>" per task when a run distils two)
COURSE_TEST_ACCURACY = "course_test_accuracy"  # protocol (a), per epoch
RETRAINED_TEST_ACCURACY = "retrained_test_accuracy"  # protocol (b), one refit per epoch
RETRAINED_RECON_ERROR = "retrained_recon_error"
FINAL_RETRAINED_TEST_ACCURACY = "final_retrained_test_accuracy"  # protocol (b) of the final D, per refit
RECON_ERROR = "recon_error"  # ||X - AE(X)|| on real test images, per epoch
RECON_ERROR_D = "recon_error_D"  # the same on D
PENALTY = "penalty"
PRIOR_NLL = "prior_nll"  # D's mean negative log-likelihood per pixel under the prior (nats), when the prior is on
RANDOM_SUBSET_TEST_ACCURACY = "random_subset_test_accuracy"  # baselines, per draw
RANDOM_SUBSET_RECON_ERROR = "random_subset_recon_error"
ALL_REAL_TEST_ACCURACY = "all_real_test_accuracy"
ALL_REAL_RECON_ERROR = "all_real_recon_error"
RANDOM_FEATURES_TEST_ACCURACY = "random_features_test_accuracy"
PIXELS_TEST_ACCURACY = "pixels_test_accuracy"
SUPERVISED_TEST_ACCURACY = "supervised_test_accuracy"
