"""Everything lit-nn writes to and reads from MLflow.

``store`` (where runs go, the one client factory), ``lifecycle`` (the one way a run opens and
ends: FINISHED, FAILED or KILLED with a reason), ``logger`` (the Lightning logger of a fit),
``callbacks`` (config, tags, checkpoints, figures, samples), ``checkpoints`` (safe loading),
``resume`` (continuing a run), ``liveness`` and ``listing`` (the runs table, dead runs).
"""
