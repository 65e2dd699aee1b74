"""The JSON summaries that the API's calls return (app/api.py): what a result holds, in numbers a
script or an assistant reads without the pictures."""

import numpy as np

from ann.analysis.explore import attention_entropy, class_shares
from ann.models.sampling import describe
from app import plots
from app.session import Session
from app.tabs import segment

TOP_ANCHORS = 5  # strongest anchors listed in /attention's summary; /export has all weights


def segment_summary(session: Session) -> dict:
    result, meta = session.result, session.explorer.meta
    shares = class_shares(result.labels, len(meta.classes))
    order = np.argsort(-shares)
    H, W = result.size
    summary = {
        "handle": session.handle,
        "checkpoint": session.checkpoint,
        "image": session.image_name,
        "size": [int(W), int(H)],  # width, height of the processed image: x < width, y < height
        "class_shares": {meta.classes[k]: round(100 * float(shares[k]), 2) for k in order if shares[k] > 0},
        "mean_confidence": float(result.confidence.mean()),
        "mean_entropy": float(result.entropy.mean()),
        "blocks": session.explorer.blocks(),
    }
    score = segment.scores(session)
    return summary if score is None else {**summary, **score}


def attention_summary(session: Session, text: str) -> dict:
    selection = session.selection
    x, y, key = selection["x"], selection["y"], selection["block"]
    weights, geometry = session.explorer.attention_at(x, y, key)
    entropy, effective = attention_entropy(weights)
    levels = geometry.level.numpy()
    return {
        "handle": session.handle,
        "block": key,
        "x": x,
        "y": y,
        "cell": list(session.explorer.feature_cell(x, y, key)),
        "S": len(weights),
        "entropy": entropy,
        "effective_anchors": effective,
        "strongest": [
            {"anchor": int(i), "where": plots.anchor_label(geometry, int(i)), "weight": float(weights[i])}
            for i in np.argsort(-weights)[:TOP_ANCHORS]
        ],
        "level_weights": [float(weights[levels == level].sum()) for level in range(len(geometry.sizes))],
        "text": text,
    }


def sampling_summary(session: Session, before: np.ndarray) -> dict:
    explorer = session.explorer
    kinds = explorer.block_kinds()
    return {
        "handle": session.handle,
        "changed_percent": 100 * float((before != session.result.labels).mean()),
        "sampling": {kind: describe(explorer.sampling[name]) for name, kind in kinds.items()},
        "gmacs": {kind: explorer.block_gmacs(name) for name, kind in kinds.items()},
        "differences": explorer.differences(),
    }
