"""``python -m benchmarks``: run every benchmark and write BENCHMARKS.md (see ``run_all``)."""

import sys

from benchmarks.run_all import main

sys.exit(main())
