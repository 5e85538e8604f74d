"""Which changes make the default run (``experiments/mnist_cnn.yaml``) better, measured on the sample only.

Each variant is the default config with some model/data/trainer settings changed, trained with
``--seed_everything s --data.init_args.seed s`` for every ``s`` in ``--seeds`` (so every seed is also a
different train/val split of the embedded sample), and scored by its final validation accuracy
on the 500 held-out images of that split. The official MNIST test set is never touched here:
``make bench`` scores the final choice once.

    python -m benchmarks.default_run_search --variants base,onecycle --seeds 0,1,2 --workers 2

Prints one Markdown row per variant (mean ± std of val_acc over the seeds, median train seconds
with ``--threads`` torch threads per worker) and appends every single run to ``--log`` as JSON.

Round 2 (issue 31: can the default reach 99 % on the official test set?), on top of the default chosen
in round 1 (``base`` = experiments/mnist_cnn.yaml: one-cycle lr 0.004, shifts + ±10° + ×0.9-1.1, 25
epochs); ``--workers 1 --threads 1`` on a 2-core machine that another job kept busy, so the seconds
are inflated and noisy (``make train`` with 2 threads, unloaded, trains ``base`` in ~20 s).
drop = dropout 0.25, ls = label smoothing 0.1, ema = EMA of the weights (decay 0.995) validated and
saved, elastic N = elastic distortion of ~N px, c24x48 / wide = channels 24, 48 / 32, 64, v1500 =
a 1,500-image validation split (3,000 train) instead of 500:

| variant | seeds = splits | val_acc % mean ± std | train s (median) |
|---|---|---|---|
| base | 0-4 | 99.04 ± 0.36 | 18 |
| ema | 0-4 | 99.04 ± 0.33 | 46 |
| drop+ls+ema | 0-4 | 98.96 ± 0.17 | 28 |
| drop+ls+ema e30 | 0-3 | 99.00 ± 0.28 | 28 |
| c24x48+drop+ls+ema | 0-4 | 98.96 ± 0.38 | 57 |
| wide+bn+drop+ls+ema | 0-2 | 99.00 ± 0.20 | 78 |
| elastic2+drop+ls+ema | 0-4 | 98.52 ± 0.41 | 30 |
| elastic2 | 0 | 98.40 | 55 |
| base v1500 | 0-5 | 98.46 ± 0.25 | 21 |
| ema v1500 | 0-2 | 98.47 ± 0.20 | 19 |
| drop+ls+ema v1500 | 0-2 | 98.40 ± 0.23 | 24 |
| c24x48+drop+ls+ema v1500 | 0-2 | 98.53 ± 0.12 | 36 |
| c24x48 v1500 | 0-2 | 98.60 ± 0.18 | 36 |
| wide v1500 | 0-5 | 98.57 ± 0.23 | 37 |
| bn v1500 | 0-2 | 98.47 ± 0.55 | 30 |
| e35 v1500 | 0-2 | 98.44 ± 0.23 | 30 |

On the 500-image split every variant but elastic distortion reads 99.0 ± 0.3 % (one image is 0.2 %):
the split cannot rank them. On the 1,500-image split (``base v1500`` reads 98.53 ± 0.20 % on seeds
0-2, the seeds of the other v1500 rows) none beats ``base`` by more than its noise: the best, 32/64
channels, reads +0.11 % over seeds 0-5 (paired by seed: +0.11 ± 0.07 % standard error, from -0.13 to
+0.27 %) for ~1.8× the time, 24/48 channels +0.07 % on seeds 0-2; dropout, label smoothing, the EMA,
batch norm, 35 epochs and elastic distortion read at or below ``base`` (perhaps this small network is
not overfitting to begin with; its training accuracy was not recorded). So round 2 kept the default
unchanged; ``make bench`` scores it over 5 seeds (official test: mean 98.55 %, min 98.34 %, max 98.69 %).

Round 3 (2026-12-04, ``--workers 2 --threads 1``, nothing else running): is the limit the minute or the
4,000 images? ``big`` = 64/128 channels, 256/128 fully connected, batch norm, dropout 0.25, 40 epochs,
~9× the default's training time (no budget); ``tta`` = test-time augmentation (the softmax averaged over
the image and its four 1-pixel shifts; training is unchanged, so its rows pair exactly with ``base``):

| variant | seeds = splits | val_acc % mean ± std | train s (median) |
|---|---|---|---|
| base v1500 | 0-4 | 98.49 ± 0.26 | 15 |
| tta v1500 | 0-4 | 98.56 ± 0.24 | 24 |
| big v1500 | 0-2 | 98.73 ± 0.35 | 166 |

TTA changed 2 of 5 splits by 2-3 images (+0.07 % on average) for +60 % of the training time (validation
runs every epoch). ``big`` reads +0.20 % over ``base`` on the same splits (seeds 0-2, paired: -0.20, +0.53,
+0.27 %; base 98.53 %), still below 99 % on the sample's validation data, for 9× the time. So no
setting found, within the minute or well beyond it, reaches 99 % on the sample's data: what limits the
default is the few training images (3,000 here, 4,000 in the default split), not its budget; the
default stays. TTA remains an option (``model.tta``), off by default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

BASE = "mnist_cnn"
WIDE = {"channels": [32, 64]}
AFFINE = {"augment": True, "rotate": 10.0, "scale": 0.1}
ONECYCLE = {"lr_schedule": "onecycle", "lr": 0.004}
BN = {"batch_norm": True}
DROP = {"dropout": 0.25}
LS = {"label_smoothing": 0.1}
EMA = {"ema_decay": 0.995}
V1500 = {"val_size": 1500}
# name: (model overrides, data overrides, trainer overrides), each on top of experiments/mnist_cnn.yaml
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "base": ({}, {}, {}),
    "onecycle": (ONECYCLE, {}, {}),
    "affine": ({}, AFFINE, {}),
    "bn": (BN, {}, {}),
    "wide": (WIDE, {}, {}),
    "dropout": ({"dropout": 0.25}, {}, {}),
    "affine+onecycle": (ONECYCLE, AFFINE, {}),
    "affine+onecycle+bn": ({**ONECYCLE, **BN}, AFFINE, {}),
    "affine+onecycle+wide": ({**ONECYCLE, **WIDE}, AFFINE, {}),
    "affine+onecycle+bn+wide": ({**ONECYCLE, **BN, **WIDE}, AFFINE, {}),
    "affine+onecycle+bn+wide e20": ({**ONECYCLE, **BN, **WIDE}, AFFINE, {"max_epochs": 20}),
    "affine+onecycle+bn+wide e25": ({**ONECYCLE, **BN, **WIDE}, AFFINE, {"max_epochs": 25}),
    "affine+onecycle+bn+wide+drop e20": ({**ONECYCLE, **BN, **WIDE, "dropout": 0.25}, AFFINE, {"max_epochs": 20}),
    "affine+onecycle+bn e25": ({**ONECYCLE, **BN}, AFFINE, {"max_epochs": 25}),
    "onecycle e25": (ONECYCLE, {}, {"max_epochs": 25}),
    "affine+onecycle e25": (ONECYCLE, AFFINE, {"max_epochs": 25}),
    "affine+onecycle+drop e25": ({**ONECYCLE, "dropout": 0.25}, AFFINE, {"max_epochs": 25}),
    "affine15+onecycle e25": (ONECYCLE, {**AFFINE, "rotate": 15.0, "scale": 0.15}, {"max_epochs": 25}),
    "affine+onecycle+bn e20": ({**ONECYCLE, **BN}, AFFINE, {"max_epochs": 20}),
    "affine+onecycle lr0.008 e25": ({**ONECYCLE, "lr": 0.008}, AFFINE, {"max_epochs": 25}),
    # round 2 (issue 31), on top of the default chosen above (affine+onecycle e25, so "base" is it now):
    # dropout before the classifier, label smoothing, an EMA of the weights (validated and saved), width
    "ema": (EMA, {}, {}),
    "drop+ls+ema": ({**DROP, **LS, **EMA}, {}, {}),
    "wide+bn+drop+ls+ema": ({**WIDE, **BN, **DROP, **LS, **EMA}, {}, {}),
    "elastic2": ({}, {"elastic": 2.0}, {}),
    "elastic2+drop+ls+ema": ({**DROP, **LS, **EMA}, {"elastic": 2.0}, {}),
    "c24x48+drop+ls+ema": ({**DROP, **LS, **EMA, "channels": [24, 48]}, {}, {}),
    "drop+ls+ema e30": ({**DROP, **LS, **EMA}, {}, {"max_epochs": 30}),
    # the 500-image validation split reads ~99.0 % for all of the above (1 image = 0.2 %): a 1,500-image
    # split (3,000 train) resolves them better, on the sample still
    "base v1500": ({}, V1500, {}),
    "ema v1500": (EMA, V1500, {}),
    "drop+ls+ema v1500": ({**DROP, **LS, **EMA}, V1500, {}),
    "c24x48+drop+ls+ema v1500": ({**DROP, **LS, **EMA, "channels": [24, 48]}, V1500, {}),
    "c24x48 v1500": ({"channels": [24, 48]}, V1500, {}),
    "wide v1500": (WIDE, V1500, {}),
    "e35 v1500": ({}, V1500, {"max_epochs": 35}),
    "bn v1500": (BN, V1500, {}),
    # round 3: is the limit the one-minute budget or the 4,000 images? A net ~16x the default's
    # compute, trained 40 epochs with no time limit
    "big v1500": ({"channels": [64, 128], "fc": [256, 128], **BN, **DROP}, V1500, {"max_epochs": 40}),
    # test-time augmentation: the same training (tta acts outside training only), scored on 5 views
    "tta v1500": ({"tta": True}, V1500, {}),
}


def train_once(variant: str, seed: int, threads: int) -> dict[str, Any]:
    """One fit of ``variant`` with weights and split seeded by ``seed``; its final val_acc and seconds."""
    import lightning as L
    import torch

    from benchmarks.common import Experiment, quiet_lightning
    from lit_nn.cli.train import TRAINER_DEFAULTS

    quiet_lightning()
    torch.set_num_threads(threads)
    model_args, data_args, trainer_args = VARIANTS[variant]
    exp = Experiment.load(BASE)
    L.seed_everything(seed, verbose=False)
    model = exp.model(**model_args)
    with tempfile.TemporaryDirectory() as tmp:  # an empty root: always the embedded sample
        dm = exp.datamodule(**{**data_args, "seed": seed, "root": tmp})
        settings = {**TRAINER_DEFAULTS, **exp.trainer_args(), **trainer_args, "accelerator": "cpu", "devices": 1}
        trainer = L.Trainer(**settings, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        start = time.perf_counter()
        trainer.fit(model, datamodule=dm)
        seconds = time.perf_counter() - start
    return {"variant": variant, "seed": seed, "val_acc": float(trainer.callback_metrics["val_acc"]),
            "seconds": seconds, "threads": threads}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.default_run_search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="0,1,2", help="weight and split seeds (default 0,1,2)")
    parser.add_argument("--workers", type=int, default=2, help="parallel fits (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fit (default 1)")
    parser.add_argument("--log", type=Path, default=Path("default_run_search.jsonl"), help="every run, as JSON lines")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s): {', '.join(sorted(unknown))}")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [(v, s) for v in variants for s in seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(train_once, v, s, args.threads) for v, s in jobs]
        results = []
        for future in futures:
            r = future.result()
            results.append(r)
            with args.log.open("a") as f:
                f.write(json.dumps(r) + "\n")
    print("| variant | seeds = splits | val_acc mean ± std | train s (median) |")
    print("|---|---|---|---|")
    for v in variants:
        rs = [r for r in results if r["variant"] == v]
        accs = [r["val_acc"] for r in rs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"| {v} | {','.join(str(r['seed']) for r in rs)} | {statistics.mean(accs):.4f} ± {std:.4f} "
              f"| {statistics.median(r['seconds'] for r in rs):.1f} |")


if __name__ == "__main__":
    main()
