"""Types that say which values an option takes, so that jsonargparse refuses the others in its own
words before anything is built (``model.lr: nan does not conform to restriction v>0 and v<inf``).

jsonargparse hands such a value to ``__init__`` as an instance of the restricted type (a ``float``
subclass); :func:`plain_numbers` turns those back into plain numbers where they are kept, since a
checkpoint's hyperparameters must load with ``torch.load(weights_only=True)``, which refuses
unknown classes.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any

from jsonargparse.typing import restricted_number_type

FinitePositiveFloat = restricted_number_type("FinitePositiveFloat", float, [(">", 0), ("<", math.inf)], join="and",
                                             docstring="a finite number > 0")


def plain_numbers(values: MutableMapping[str, Any]) -> None:
    """Replace every int or float subclass value (not bool) in ``values`` by the plain int or float."""
    for key, value in values.items():
        if isinstance(value, float) and type(value) is not float:
            values[key] = float(value)
        elif isinstance(value, int) and not isinstance(value, bool) and type(value) is not int:
            values[key] = int(value)
