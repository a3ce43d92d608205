"""Depth metrics with the usual protocols: masks, caps, and optional alignment of the prediction.

Alignment modes: `none` (metric depth, as MetricGold is judged), `median` (scale by
median(gt) / median(pred)), `affine` (least-squares scale and shift in depth, as Marigold
evaluates affine-invariant depth). Metrics are per image; a benchmark score is the mean of the
per-image values (`aggregate`).
"""
from __future__ import annotations

import numpy as np

METRICS = ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'log10', 'silog', 'delta1', 'delta2',
           'delta3', 'boundary_f1')
# True where a larger value is better (for tables and comparisons)
HIGHER_IS_BETTER = {name: name.startswith('delta') or name == 'boundary_f1' for name in METRICS}
# Depth Pro's boundary thresholds: a neighbour more than 5 % ... 25 % farther is an occlusion.
BOUNDARY_THRESHOLDS = tuple(float(t) for t in np.linspace(1.05, 1.25, 10))
ALIGNMENTS = ('none', 'median', 'affine')


def align(pred: np.ndarray, gt: np.ndarray, mode: str) -> tuple:
    """Aligned prediction (N,) and (scale, shift) fitted on matching valid pixels pred/gt (N,)."""
    if mode == 'none':
        return pred, 1.0, 0.0
    if mode == 'median':
        scale = float(np.median(gt) / np.median(pred))
        return pred * scale, scale, 0.0
    if mode == 'affine':
        A = np.stack([pred, np.ones_like(pred)], axis=1)
        (scale, shift), *_ = np.linalg.lstsq(A, gt, rcond=None)
        return pred * scale + shift, float(scale), float(shift)
    raise ValueError(f'`alignment` must be one of {ALIGNMENTS}, got {mode!r}.')


def ground_truth_mask(gt: np.ndarray, mask: np.ndarray | None = None, min_depth: float = 1e-3,
                      max_depth: float | None = None) -> np.ndarray:
    """Pixels with ground truth to score: finite gt inside [min_depth, max_depth], and mask."""
    with np.errstate(invalid='ignore'):
        keep = np.isfinite(gt) & (gt >= min_depth)
        if max_depth is not None:
            keep &= gt <= max_depth
    return keep if mask is None else keep & mask


def evaluation_mask(gt: np.ndarray, pred: np.ndarray, mask: np.ndarray | None = None,
                    min_depth: float = 1e-3, max_depth: float | None = None) -> np.ndarray:
    """Pixels to score: ground_truth_mask where the prediction is finite."""
    return ground_truth_mask(gt, mask, min_depth, max_depth) & np.isfinite(pred)


def masked_abs_rel(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None
                   ) -> tuple[float, int]:
    """(mean |pred - ref| / ref, pixel count) over pixels where both are finite and ref > 0
    (and `mask`): one depth map against another, e.g. a warped or perturbed prediction
    against a reference prediction. (nan, 0) when no pixel qualifies."""
    with np.errstate(invalid='ignore'):
        keep = np.isfinite(pred) & np.isfinite(ref) & (ref > 0)
    if mask is not None:
        keep &= mask
    if not keep.any():
        return float('nan'), 0
    return float(np.mean(np.abs(pred[keep] - ref[keep]) / ref[keep])), int(keep.sum())


def occlusion_edges(depth: np.ndarray, valid: np.ndarray, ratio: float) -> list:
    """Foreground-side occlusion edges of a depth map, one bool map per neighbour direction.

    Pixel i is an edge towards neighbour j (right, left, down, up) when depth_j / depth_i >
    `ratio` and both are valid: i occludes j. Maps are (H, W-1) or (H-1, W).
    """
    with np.errstate(divide='ignore', invalid='ignore'):
        pairs = (((slice(None), slice(None, -1)), (slice(None), slice(1, None))),   # right
                 ((slice(None), slice(1, None)), (slice(None), slice(None, -1))),   # left
                 ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),   # down
                 ((slice(1, None), slice(None)), (slice(None, -1), slice(None))))   # up
        return [(depth[j] / depth[i] > ratio) & valid[i] & valid[j] for i, j in pairs]


def boundary_f1(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                thresholds=BOUNDARY_THRESHOLDS) -> float:
    """Depth-boundary F1 (Depth Pro): occlusion edges of pred vs those of gt, mean over ratios.

    Edges come from depth ratios between neighbouring pixels (`occlusion_edges`), so the score
    is scale-invariant and tests sharpness, not metres. Precision and recall count edge pixels
    over all four directions. NaN when gt has no edge at any threshold (nothing to find).
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    valid = evaluation_mask(gt, pred, mask) & (pred > 0)
    scores = []
    for t in thresholds:
        hits = found = truth = 0
        for e_pred, e_gt in zip(occlusion_edges(pred, valid, t), occlusion_edges(gt, valid, t)):
            hits += int(np.count_nonzero(e_pred & e_gt))
            found += int(np.count_nonzero(e_pred))
            truth += int(np.count_nonzero(e_gt))
        if truth == 0:
            continue
        precision = hits / found if found else 0.0
        recall = hits / truth
        scores.append(0.0 if hits == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores)) if scores else float('nan')


def compute_metrics(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None,
                    min_depth: float = 1e-3, max_depth: float | None = None,
                    alignment: str = 'none') -> dict:
    """All METRICS for one image; pred and gt (H, W) metres, mask bool (H, W) or None.

    After alignment the prediction is clipped to [min_depth, max_depth] (the standard
    protocol: a prediction of 0 or beyond the cap must not blow up log metrics). Returns the
    metrics plus `valid_pixels`, `scale` and `shift` of the alignment. With no valid pixel all
    metrics are NaN. `boundary_f1` is scored on the unaligned prediction (it is
    scale-invariant) over the same pixels.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f'prediction {pred.shape} and ground truth {gt.shape} differ in shape.')
    scorable_mask = ground_truth_mask(gt, mask, min_depth, max_depth)
    keep = scorable_mask & np.isfinite(pred)
    scorable = int(scorable_mask.sum())
    result = {name: float('nan') for name in METRICS}
    # coverage: the share of scorable ground-truth pixels the prediction gave a depth (a model
    # that flags pixels invalid, e.g. as sky, is scored on the rest only: this says how many)
    result.update(valid_pixels=int(keep.sum()), scale=float('nan'), shift=float('nan'),
                  coverage=float(keep.sum() / scorable) if scorable else float('nan'))
    if not keep.any():
        return result
    g = gt[keep]
    p, scale, shift = align(pred[keep], g, alignment)
    p = np.clip(p, min_depth, max_depth if max_depth is not None else np.inf)
    diff = p - g
    log_diff = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    result.update(
        abs_rel=float(np.mean(np.abs(diff) / g)),
        sq_rel=float(np.mean(diff ** 2 / g)),
        rmse=float(np.sqrt(np.mean(diff ** 2))),
        rmse_log=float(np.sqrt(np.mean(log_diff ** 2))),
        log10=float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        # scale-invariant log error (Eigen et al.), x100 as in the KITTI benchmark
        silog=float(np.sqrt(max(np.mean(log_diff ** 2) - np.mean(log_diff) ** 2, 0.0)) * 100),
        delta1=float(np.mean(ratio < 1.25)),
        delta2=float(np.mean(ratio < 1.25 ** 2)),
        delta3=float(np.mean(ratio < 1.25 ** 3)),
        boundary_f1=boundary_f1(pred, gt, keep),
        scale=scale, shift=shift)
    return result


def aggregate(rows: list) -> dict:
    """Mean of each metric over images (images without valid pixels are left out)."""
    out = {}
    for name in METRICS:
        values = [row[name] for row in rows if np.isfinite(row.get(name, np.nan))]
        out[name] = float(np.mean(values)) if values else float('nan')
    out['images'] = sum(1 for row in rows if row.get('valid_pixels', 0) > 0)
    coverage = [row['coverage'] for row in rows if np.isfinite(row.get('coverage', np.nan))]
    out['coverage'] = float(np.mean(coverage)) if coverage else float('nan')
    return out


def markdown_table(summaries: dict, metrics=METRICS) -> str:
    """Markdown table, one row per named summary (e.g. {'tiny, none': {...}}), 3 decimals."""
    names = [f'{m} {"↑" if HIGHER_IS_BETTER[m] else "↓"}' for m in metrics]
    header = '| | ' + ' | '.join(names) + ' |'
    lines = [header, '|---|' + '---|' * len(metrics)]
    for label, summary in summaries.items():
        lines.append(f'| {label} | ' + ' | '.join(f'{summary[m]:.3f}' for m in metrics) + ' |')
    return '\n'.join(lines) + '\n'
