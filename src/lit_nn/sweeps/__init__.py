"""Sweeps: a grid of ``lit-nn fit`` runs nested under one MLflow parent run, and their reports.

``grid`` reads sweep files and expands them into points; ``plan`` decides which points to run
again; ``claims`` makes sure one sweep runs a point once; ``runner`` and ``worker`` train the
points in worker processes; ``driver`` ties these together; ``compare`` reads the points back
from MLflow and ``report`` draws and tabulates them.
"""
