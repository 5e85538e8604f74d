"""Matplotlib figures shared by runs, reports and labs (headless: the Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

# headless Agg, except in a notebook kernel, whose inline backend (ipykernel sets MPLBACKEND) shows figures
if "inline" not in os.environ.get("MPLBACKEND", ""):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def confusion_matrix_figure(matrix: torch.Tensor, classes: Sequence[str] | None = None) -> plt.Figure:
    """Counts of (true class, predicted class), with the per-class recall on the diagonal's axis."""
    n = matrix.shape[0]
    classes = list(classes) if classes else [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(matrix.numpy(), cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = int(matrix.sum())
    acc = float(matrix.diag().sum()) / max(total, 1)
    ax.set_title(f"confusion matrix — {total} test images, accuracy {acc:.2%}")
    threshold = float(matrix.max()) / 2
    for i in range(n):
        for j in range(n):
            value = int(matrix[i, j])
            if value:
                ax.text(j, i, value, ha="center", va="center", fontsize=7,
                        color="white" if value > threshold else "black")
    fig.tight_layout()
    return fig
