"""Inception Score (and its classifier-agnostic form, the "classifier score").

Salimans et al., 2016, "Improved Techniques for Training GANs"
(https://arxiv.org/abs/1606.03498): IS = exp(E_x KL(p(y|x) || p(y))), with p(y) the mean of
p(y|x) over the split. Computed on `splits` consecutive, equal-sized parts of the samples (the
OpenAI convention: part i is rows [i N // splits, (i + 1) N // splits)); the mean and standard
deviation (ddof = 0) of the per-split scores are returned. With `splits=1` and logits it equals
TF-GAN's `classifier_score_from_logits`.
"""

import numpy as np

from kgan.metrics._validation import as_activations, check_positive_int

_SUM_TOLERANCE = 1e-3


def _log_softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def inception_score(probs, splits=10, from_logits=False):
    """Inception Score from class probabilities (or logits) of generated samples.

    Salimans et al., 2016 (https://arxiv.org/abs/1606.03498). Terms with p(y|x) = 0 contribute
    0 (0 log 0 = 0). The score lies in [1, num_classes].

    Args:
        probs: `[num_samples, num_classes]` class probabilities (rows sum to 1), or logits
            when `from_logits=True` (then softmax is taken in float64, using log-softmax
            for the log terms as TF-GAN does).
        splits: number of consecutive parts, each scored separately (>= 1,
            <= num_samples).
        from_logits: whether `probs` holds logits.

    Returns:
        `{"mean": float, "std": float}` over the splits.

    Raises:
        ValueError: if `probs` is not 2-D / finite, has fewer samples than `splits`, or (with
            `from_logits=False`) has negative entries or rows not summing to 1.
    """
    splits = check_positive_int(splits, "splits")
    values = as_activations(probs, "logits" if from_logits else "probs", min_samples=splits)
    if from_logits:
        log_p = _log_softmax(values)
        p = np.exp(log_p)
    else:
        if np.any(values < 0):
            raise ValueError("probs has negative entries; pass from_logits=True for logits.")
        row_sums = values.sum(axis=1)
        if np.any(np.abs(row_sums - 1.0) > _SUM_TOLERANCE):
            raise ValueError(
                "rows of probs must sum to 1 (found sums from "
                f"{row_sums.min():.4g} to {row_sums.max():.4g}); pass from_logits=True for "
                "logits."
            )
        p = values
        with np.errstate(divide="ignore"):
            log_p = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
    n = p.shape[0]
    scores = np.empty(splits, np.float64)
    for i in range(splits):
        part = slice(i * n // splits, (i + 1) * n // splits)
        p_part, log_p_part = p[part], log_p[part]
        p_y = p_part.mean(axis=0)
        log_p_y = np.log(np.where(p_y > 0, p_y, 1.0))  # p_y = 0 only where every p is 0
        kl = np.sum(p_part * (log_p_part - log_p_y), axis=1)
        scores[i] = np.exp(kl.mean())
    return {"mean": float(scores.mean()), "std": float(scores.std())}
