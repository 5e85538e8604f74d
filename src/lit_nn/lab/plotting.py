"""Small matplotlib helpers shared by the labs' figures."""

from __future__ import annotations

from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, NullLocator


def log_axis(ax: Axes, which: str = "y") -> None:
    """Log scale with plain-text major labels (1e-06) and no minor ticks.

    Matplotlib's default log labels are mathtext (10⁻⁶) plus minor ticks; laying those out
    costs most of a small figure's drawing time (seconds on a busy machine).
    """
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
