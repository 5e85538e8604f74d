"""Run by tests/test_ddp.py: a 2-process DDP fit that records which samples each rank saw.

The targets are the sample indices, so the files written per rank and epoch show directly
whether the shards are disjoint, complete and reshuffled per epoch.
"""

import json
import sys

import lightning as L
import torch
from torch import nn

from lit_nn.data import TensorBatches

OUT, N = sys.argv[1], 20


class Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        x, idx = batch
        self.seen += idx.tolist()
        return self.layer(x).sum()

    def on_train_epoch_end(self) -> None:
        with open(f"{OUT}/rank{self.global_rank}_epoch{self.current_epoch}.json", "w") as f:
            json.dump(self.seen, f)
        self.seen = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return TensorBatches(torch.zeros(N, 1), torch.arange(N), batch_size=3, shuffle=True, seed=7)


if __name__ == "__main__":
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Recorder())
