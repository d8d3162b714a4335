"""Scores of predicted region boxes (or a point) against ground-truth evidence boxes.

Boxes are ``(x0, y0, x1, y1)`` in original-image pixels, x1/y1 exclusive, floats allowed;
areas and overlaps are computed in continuous coordinates. Region boxes are ranked: the
first is the method's top-ranked region. Several ground-truth boxes per sample
(multi-evidence) are supported: :func:`any_box_hit` asks whether any of them is hit,
:func:`all_boxes_covered` whether every one is covered by the top-k regions.

NaN policy: no ground-truth box of positive area means NaN (skipped, never a hit); a
method that proposes no region scores 0.0 (it failed to localise).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from egg_interp.errors import InputError
from egg_interp.metrics.localisation import BoxesLike, argmax_point, as_boxes


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes ``(x0, y0, x1, y1)``.

    Returns 0.0 when the union has zero area (two degenerate boxes).

    Examples
    --------
    >>> box_iou((0, 0, 2, 2), (1, 0, 3, 2))
    0.3333333333333333
    """
    pair = as_boxes([a, b])
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = pair
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = float(_areas(pair).sum()) - inter
    return float(inter / union) if union > 0 else 0.0


def _valid_gt(gt_boxes: BoxesLike) -> np.ndarray:
    gt = as_boxes(gt_boxes)
    return gt[_areas(gt) > 0]


def region_iou(region_boxes: BoxesLike, gt_boxes: BoxesLike) -> float:
    """IoU of the top-ranked region box with its best-matching ground-truth box.

    Parameters
    ----------
    region_boxes : sequence of (x0, y0, x1, y1)
        Predicted regions, best first; only the first is scored.
    gt_boxes : sequence of (x0, y0, x1, y1)
        Ground-truth boxes; the maximum IoU over them is returned.

    Returns
    -------
    float
        In [0, 1]; 0.0 when there is no region box; NaN when no ground-truth box has
        positive area.
    """
    gt = _valid_gt(gt_boxes)
    if len(gt) == 0:
        return float("nan")
    regions = as_boxes(region_boxes)
    if len(regions) == 0:
        return 0.0
    return max(box_iou(regions[0], g) for g in gt)


def region_hit(region_boxes: BoxesLike, gt_boxes: BoxesLike, iou_threshold: float = 0.5) -> float:
    """1.0 when :func:`region_iou` >= ``iou_threshold``, else 0.0; NaN when it is NaN."""
    iou = region_iou(region_boxes, gt_boxes)
    return iou if np.isnan(iou) else float(iou >= iou_threshold)


def _pixel_ranges(gt: np.ndarray, shape: tuple[int, int] | None) -> tuple[np.ndarray, ...]:
    """Inclusive pixel column/row ranges of each box, and whether it has any pixel."""
    c0, c1 = np.floor(gt[:, 0]), np.ceil(gt[:, 2]) - 1
    r0, r1 = np.floor(gt[:, 1]), np.ceil(gt[:, 3]) - 1
    nonempty = (gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])
    if shape is not None:
        c0, c1 = np.maximum(c0, 0), np.minimum(c1, shape[1] - 1)
        r0, r1 = np.maximum(r0, 0), np.minimum(r1, shape[0] - 1)
    return c0, c1, r0, r1, nonempty & (c1 >= c0) & (r1 >= r0)


def box_hits(
    point: Sequence[float],
    gt_boxes: BoxesLike,
    tolerance: float = 15.0,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Which ground-truth boxes a point hits, with the pointing game's pixel rule.

    Parameters
    ----------
    point : (x, y)
        Original-image coordinates; it stands for the pixel ``(row floor(y), col floor(x))``.
    gt_boxes : sequence of (x0, y0, x1, y1)
        Ground-truth boxes, rasterised as in ``localisation.boxes_to_mask``.
    tolerance : float, default 15.0
        A box is hit when one of its pixels lies at distance < tolerance (strict) from the
        point's pixel, exactly as in ``localisation.pointing_game``.
    shape : (H, W), optional
        Image size; boxes are clipped to it when given.

    Returns
    -------
    ndarray of bool, shape (N,)
        One entry per ground-truth box; a box with no pixel (in the image) is never hit.
    """
    c0, c1, r0, r1, nonempty = _pixel_ranges(as_boxes(gt_boxes), shape)
    pc, pr = int(np.floor(point[0])), int(np.floor(point[1]))
    dc = np.clip(pc, c0, c1) - pc
    dr = np.clip(pr, r0, r1) - pr
    return nonempty & (dc**2 + dr**2 < tolerance**2)


def any_box_hit(
    point_or_saliency: np.ndarray | Sequence[float],
    gt_boxes: BoxesLike,
    tolerance: float = 15.0,
) -> float:
    """1.0 when the point (or the map's argmax) hits any ground-truth box, else 0.0.

    Parameters
    ----------
    point_or_saliency : (x, y) or ndarray of shape (H, W)
        A point in original-image coordinates, or a map whose argmax pixel is used
        (first maximum in row-major order; boxes are then clipped to the map). For a map
        this equals ``localisation.pointing_game`` on the union of the boxes.
    gt_boxes : sequence of (x0, y0, x1, y1)
    tolerance : float, default 15.0
        Strict pixel radius, as in the pointing game.

    Returns
    -------
    float
        1.0 / 0.0; NaN when no ground-truth box has a pixel (in the image), or the map
        holds NaN/inf or is constant.
    """
    if tolerance <= 0:
        raise InputError(f"tolerance must be > 0 pixels, got {tolerance}")
    arr = np.asarray(point_or_saliency, dtype=float)
    shape = None
    if arr.ndim == 2:
        shape = (arr.shape[0], arr.shape[1])
        rc = argmax_point(arr)
        point = None if rc is None else (rc[1], rc[0])
    elif arr.shape == (2,):
        point = (float(arr[0]), float(arr[1]))
    else:
        raise InputError(f"expected a point (x, y) or a map (H, W), got shape {arr.shape}")
    if not _pixel_ranges(as_boxes(gt_boxes), shape)[-1].any() or point is None:
        return float("nan")
    return float(box_hits(point, gt_boxes, tolerance, shape).any())


def box_coverage(region_boxes: BoxesLike, gt_boxes: BoxesLike) -> np.ndarray:
    """Fraction of each ground-truth box's area inside the union of the region boxes.

    Exact in continuous coordinates (the plane is cut along every box edge). Returns an
    ``ndarray of shape (N_gt,)``; NaN for a ground-truth box of zero area.
    """
    gt, regions = as_boxes(gt_boxes), as_boxes(region_boxes)
    out = np.full(len(gt), np.nan)
    for i, (gx0, gy0, gx1, gy1) in enumerate(gt):
        area = max(gx1 - gx0, 0.0) * max(gy1 - gy0, 0.0)
        if area <= 0:
            continue
        xs = np.unique(np.clip(np.r_[gx0, gx1, regions[:, 0], regions[:, 2]], gx0, gx1))
        ys = np.unique(np.clip(np.r_[gy0, gy1, regions[:, 1], regions[:, 3]], gy0, gy1))
        cx, cy = (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2
        covered = np.zeros((len(cy), len(cx)), dtype=bool)
        for rx0, ry0, rx1, ry1 in regions:
            covered |= ((cy >= ry0) & (cy < ry1))[:, None] & ((cx >= rx0) & (cx < rx1))[None, :]
        cell_areas = np.outer(np.diff(ys), np.diff(xs))
        out[i] = cell_areas[covered].sum() / area
    return out


def all_boxes_covered(
    region_boxes: BoxesLike,
    gt_boxes: BoxesLike,
    min_coverage: float = 0.5,
    k: int | None = None,
) -> float:
    """1.0 when every ground-truth box is covered by the union of the top-k regions.

    A ground-truth box counts as covered when at least ``min_coverage`` of its area lies
    inside the union of the first ``k`` region boxes (all of them when ``k`` is None); see
    :func:`box_coverage`. Zero-area ground-truth boxes are ignored.

    Returns
    -------
    float
        1.0 / 0.0; NaN when no ground-truth box has positive area.
    """
    if not 0 < min_coverage <= 1:
        raise InputError(f"min_coverage must be in (0, 1], got {min_coverage}")
    regions = as_boxes(region_boxes)
    if k is not None:
        regions = regions[: max(int(k), 0)]
    cov = box_coverage(regions, gt_boxes)
    cov = cov[~np.isnan(cov)]
    if len(cov) == 0:
        return float("nan")
    return float((cov >= min_coverage).all())
