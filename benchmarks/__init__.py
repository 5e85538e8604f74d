"""lit-nn speed benchmarks (``python -m benchmarks``; ``--quick`` for a smoke run).

They time lit-nn's training path against a plain PyTorch loop and the classic tutorial
loop, in one process and interleaved, and write ``BENCHMARKS.md`` at the repository root.
"""
