"""Covariate-shift weights: make a simulated catalog look like a survey's photometry, no survey labels used.

A network pretrained on a mock learns p(z | photometry) under the mock's population: its mix of
galaxy types and redshifts acts as a prior wherever colours are degenerate, and a survey with a
different mix (cosmoDC2 has more red galaxies at low z than the default mock) then gets the wrong
branch of a degeneracy: an outlier. Importance weighting (Shimodaira 2000; Sugiyama et al. 2007)
corrects the population part of the gap with the survey's *unlabelled* photometry alone: a
classifier tells mock from survey galaxies by their magnitudes and colours, and its odds
p(survey | x) / p(mock | x) are the density ratio w(x) = p_survey(x) / p_mock(x). Resampling the
mock with probabilities proportional to w gives a pretraining set whose photometry is distributed
like the survey's, each galaxy keeping its simulated redshift. What it cannot fix is a mock whose
colour-redshift relation itself differs from the survey's, nor photometry the mock never makes
(w is only defined where the mock has galaxies; it is capped at ``max_weight``).

The probabilities are cross-fitted: each half of the mock is weighted by a classifier trained on
the other half, so a galaxy's own label never inflates its weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Resampling:
    """Indices into the source rows and what the weights looked like.

    Attributes:
        index: [n] rows of the source drawn (with replacement) with probability proportional to w.
        weights: [N_source] density ratios, normalised to mean 1, capped at ``max_weight``.
        effective_fraction: (sum w)^2 / (N sum w^2), the share of the source the weighted set is worth.
        auc: cross-fitted ROC AUC of source vs target (0.5: indistinguishable photometry).
    """

    index: np.ndarray
    weights: np.ndarray
    effective_fraction: float
    auc: float


def density_ratio_resample(
    source: np.ndarray, target: np.ndarray, seed: int = 0, max_weight: float = 20.0, n: int | None = None
) -> Resampling:
    """Resample ``source`` rows so that their features follow the distribution of ``target`` rows.

    Args:
        source: [N_s, F] features of the simulated galaxies (e.g. magnitudes and colours).
        target: [N_t, F] the same features of the survey galaxies (no labels).
        seed: seeds the folds, the classifier and the draw.
        max_weight: cap of w (mean 1) before renormalising: a few source galaxies in a region the
            target fills must not be copied thousands of times.
        n: rows drawn (default N_s).

    Raises:
        ValueError: feature arrays that are not [N, F] with the same F, or hold NaN.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
    if source.ndim != 2 or target.ndim != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"features must be [N, F] with the same F, got {source.shape} and {target.shape}")
    if not (np.isfinite(source).all() and np.isfinite(target).all()):
        raise ValueError("features hold NaN or inf (fill non-detections first)")
    rng = np.random.default_rng(seed)
    fold_s = rng.permutation(len(source)) % 2
    fold_t = rng.permutation(len(target)) % 2
    prob = np.empty(len(source))
    scores, labels = [], []
    for k in (0, 1):
        x = np.concatenate([source[fold_s != k], target[fold_t != k]])
        y = np.concatenate([np.zeros(np.sum(fold_s != k)), np.ones(np.sum(fold_t != k))])
        # classes balanced by sample weight, so the odds are the density ratio up to one constant
        sw = np.where(y == 1, len(y) / (2 * y.sum()), len(y) / (2 * (len(y) - y.sum())))
        # early stopping and large leaves: where the catalogs do not differ, the odds stay near 1
        # instead of fitting noise (noise weights would only shrink the effective sample)
        clf = HistGradientBoostingClassifier(
            max_iter=300, min_samples_leaf=100, l2_regularization=1.0, early_stopping=True, random_state=seed
        )
        clf.fit(x, y, sample_weight=sw)
        prob[fold_s == k] = clf.predict_proba(source[fold_s == k])[:, 1]
        scores.append(clf.predict_proba(np.concatenate([source[fold_s == k], target[fold_t == k]]))[:, 1])
        labels.append(np.concatenate([np.zeros(np.sum(fold_s == k)), np.ones(np.sum(fold_t == k))]))
    p = np.clip(prob, 1e-6, 1 - 1e-6)
    w = p / (1 - p)
    w = np.minimum(w / w.mean(), max_weight)
    w /= w.mean()
    index = np.sort(rng.choice(len(source), size=n or len(source), replace=True, p=w / w.sum()))
    auc = float(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))
    return Resampling(index, w, float(w.sum() ** 2 / (len(w) * np.sum(w * w))), auc)
