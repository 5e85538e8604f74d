"""What ``lit-nn predict`` shows and records: one row per input (index or file, predicted class,
probability, true label where known), a short table and the accuracy, and a CSV of every row."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lit_nn.data.image_files import NO_LABEL

SHOWN = 10  # rows printed when predicting a whole split (every row is in the CSV)


@dataclass(frozen=True)
class Prediction:
    index: int
    source: str          # the image file, or "" for an item of a split
    predicted: str
    probability: float
    label: str | None    # the true class, where known


def prediction_rows(batches: Sequence[dict[str, torch.Tensor]], classes: Sequence[str] | None,
                    sources: Sequence[str] = ()) -> list[Prediction]:
    """The rows of ``Classifier.predict_step``'s outputs, in input order."""
    pred = torch.cat([b["pred"] for b in batches]).tolist()
    prob = torch.cat([b["prob"] for b in batches]).tolist()
    target = torch.cat([b["target"] for b in batches]).tolist()
    name = (lambda i: classes[i]) if classes else str  # noqa: E731 - a one-line lookup
    return [Prediction(i, sources[i] if i < len(sources) else "", name(p), q, None if t == NO_LABEL else name(t))
            for i, (p, q, t) in enumerate(zip(pred, prob, target, strict=True))]


def to_csv(rows: Sequence[Prediction]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["index", "file", "predicted", "probability", "label"])
    for r in rows:
        writer.writerow([r.index, r.source, r.predicted, f"{r.probability:.6f}", "" if r.label is None else r.label])
    return out.getvalue()


def summary(rows: Sequence[Prediction]) -> str:
    """A short table (every file, or the first rows of a split) and the accuracy where labels are known."""
    shown = rows if rows and rows[0].source else rows[:SHOWN]
    width = max([len(r.source) for r in shown] + [len("input")])
    lines = [f"{'input':<{width}}  predicted  probability  label"]
    for r in shown:
        where = r.source or f"#{r.index}"
        label = "-" if r.label is None else r.label + ("" if r.label == r.predicted else "  ✗")
        lines.append(f"{where:<{width}}  {r.predicted:<9}  {r.probability:>11.4f}  {label}")
    if len(shown) < len(rows):
        lines.append(f"... {len(rows) - len(shown)} more in predictions.csv")
    known = [r for r in rows if r.label is not None]
    if known:
        correct = sum(r.label == r.predicted for r in known)
        lines.append(f"accuracy: {correct / len(known):.4f} ({correct} of {len(known)} correct)")
    return "\n".join(lines)
