"""The epoch's training-loss accumulator is per-rank state, never a module buffer.

DDP broadcasts rank 0's buffers to every rank before each forward (``broadcast_buffers=True``,
its default), so a sum kept in a buffer would be overwritten on the other ranks with rank 0's,
and the train_loss synced across ranks would mix rank 0's batches into theirs (found by the
multi-node test, tests/cli/test_multinode.py).
"""

from __future__ import annotations

import torch

from lit_nn.models import MLP, CharRNN


def test_accumulator_is_not_a_buffer():
    for model in (MLP(hidden=8), CharRNN(hidden=8)):
        assert not any("train_loss" in name for name, _ in model.named_buffers()), type(model).__name__
    assert dict(MLP(hidden=8).named_buffers()) == {}  # nothing for DDP to overwrite at all


def test_accumulator_gives_the_weighted_epoch_mean_and_restarts_each_epoch():
    model = MLP(hidden=8)
    logged = {}
    model.log = lambda key, value, **kw: logged.__setitem__(key, (value, kw))
    model.on_train_epoch_start()
    model.accumulate_train_loss(torch.tensor(2.0), 3)
    model.accumulate_train_loss(torch.tensor(1.0), 1)
    model.on_train_epoch_end()
    value, kw = logged["train_loss"]
    assert value.item() == 7.0 / 4 and value.dtype == torch.float32 and kw["sync_dist"] is True
    model.on_train_epoch_start()
    model.accumulate_train_loss(torch.tensor(5.0, dtype=torch.float64), 2)
    model.on_train_epoch_end()
    assert logged["train_loss"][0].item() == 5.0 and logged["train_loss"][0].dtype == torch.float64
