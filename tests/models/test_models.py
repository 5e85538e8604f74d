"""Model shapes for every depth/activation, the CNN layout, and the optimizer factory."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from lit_nn.core.errors import UserError
from lit_nn.models import ACTIVATIONS, CNN, MLP
from lit_nn.models.optimizers import OPTIMIZERS, build_optimizer


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_shapes_and_layer_count(depth, activation):
    model = MLP(depth=depth, hidden=32, activation=activation)
    out = model(torch.randn(5, 1, 28, 28))
    assert out.shape == (5, 10)
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    assert len(linears) == depth + 1
    acts = [m for m in model.net if isinstance(m, ACTIVATIONS[activation])]
    assert len(acts) == depth


def test_mlp_depth0_is_softmax_regression():
    model = MLP(depth=0)
    assert model.num_parameters == 784 * 10 + 10


def test_cnn_default_is_the_classic_layout():
    model = CNN()
    convs = [m for m in model.net if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(1, 16, (3, 3)), (16, 32, (3, 3))]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(800, 128), (128, 64), (64, 10)]
    assert CNN(channels=(8, 12), fc=(20, 16))(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_factory_builds_and_steps(name):
    param = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = build_optimizer(name, [param], lr=0.1, weight_decay=0.01, momentum=0.9 if name == "sgd" else 0.0)
    assert isinstance(opt, OPTIMIZERS[name])
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[0]["weight_decay"] == 0.01
    before = param.detach().clone()
    (param**2).sum().backward()
    opt.step()
    assert (param.detach().abs() < before.abs()).all()  # a step downhill on a bowl


def test_sgd_momentum_and_nesterov_pass_through():
    p = [nn.Parameter(torch.zeros(1))]
    group = build_optimizer("sgd", p, lr=0.1, momentum=0.9, nesterov=True).param_groups[0]
    assert group["momentum"] == 0.9 and group["nesterov"] is True


def test_model_configures_its_named_optimizer():
    model = MLP(optimizer="adamw", lr=0.01, weight_decay=0.1)
    opt = model.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["weight_decay"] == 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "adamm"}, r"unknown optimizer 'adamm' \(did you mean 'adam'\?\); valid: sgd, adagrad"),
        ({"activation": "relu6"}, r"unknown activation 'relu6'.*valid: sigmoid, tanh, relu"),
        ({"lr": 0.0}, "lr must be > 0, got 0.0"),
        ({"lr": float("nan")}, "lr must be > 0, got nan"),
        ({"depth": -1}, "model.depth must be >= 0, got -1"),
        ({"hidden": 0}, "model.hidden must be > 0, got 0"),
        ({"dropout": 1.0}, r"model.dropout must be in \[0, 1\), got 1.0"),
    ],
)
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(UserError, match=message):
        MLP(**kwargs)


def test_nan_loss_raises_diverged_with_epoch_and_step():
    from lit_nn.models import DivergedError

    model = MLP(depth=0, lr=0.5)
    with pytest.raises(DivergedError, match=r"loss is nan at epoch 0, step 0 .*smaller learning rate"):
        model.check_finite(torch.tensor(float("nan")), batch_idx=0)


@pytest.mark.parametrize(("name", "fused"), [("sgd", True), ("adagrad", True), ("adam", True), ("adamw", True),
                                             ("rmsprop", None), ("adadelta", None)])
def test_fused_kernel_where_torch_has_one(name: str, fused: bool | None) -> None:
    opt = build_optimizer(name, nn.Linear(4, 2).parameters(), lr=0.1)
    assert opt.defaults.get("fused") is fused
    meta = build_optimizer(name, nn.Linear(4, 2, device="meta").parameters(), lr=0.1)
    assert not meta.defaults.get("fused")  # no kernel for that device: the plain implementation


def test_fused_adam_takes_the_same_steps_as_the_loop_implementation() -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(8, 3), nn.Linear(8, 3)
    b.load_state_dict(a.state_dict())
    fused, looped = build_optimizer("adam", a.parameters(), lr=0.01), torch.optim.Adam(b.parameters(), lr=0.01)
    x = torch.randn(16, 8)
    for _ in range(5):
        for model, opt in ((a, fused), (b, looped)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight, rtol=1e-5, atol=1e-6)


def test_mlp_takes_one_width_per_layer():
    """The notes' first network: 784 → 128 → 64 → 10."""
    model = MLP(hidden=[128, 64], activation="selu")
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 128), (128, 64), (64, 10)]
    assert model.hparams.depth == 2 and model.run_tags()["depth"] == "2"
    assert MLP(depth=3, hidden=[32, 16, 8]).num_parameters == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10
    assert [m.out_features for m in MLP(depth=3, hidden=16).net if isinstance(m, torch.nn.Linear)] == [16, 16, 16, 10]
    assert MLP(hidden=16).hparams.depth == 2  # one width: two layers unless told otherwise


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"depth": 2, "hidden": [128, 64, 32]}, "model.depth=2 but model.hidden lists 3 width(s)"),
    ({"hidden": [128, 0]}, "model.hidden must be > 0, got 0"),
])
def test_mlp_widths_that_do_not_fit_are_refused(kwargs, message):
    with pytest.raises(UserError, match=re.escape(message)):
        MLP(**kwargs)


def test_per_layer_widths_from_the_command_line(capsys):
    from helpers import run_main

    result = run_main(capsys, "fit", "-c", "experiments/mnist_mlp.yaml", "--model.init_args.hidden", "[128, 64]",
                      "--print_config")
    assert result.returncode == 0, result.stderr
    assert "- 128\n    - 64" in result.stdout or "hidden: [128, 64]" in result.stdout


def test_attached_trainer_is_the_trainer_or_none_outside_one():
    """Models ask for their Trainer where they may have none (built by hand, loaded for MLflow):
    LightningModule.trainer raises then, and attached_trainer says None."""
    import lightning as L

    from lit_nn.models.base import attached_trainer

    model = MLP(depth=0)
    assert attached_trainer(model) is None
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    model.trainer = trainer  # what Trainer.fit does first
    assert attached_trainer(model) is trainer


def test_identity_mlp_is_one_linear_map_however_deep():
    """Without an activation, W4(W3(W2(W1 x + b1) + b2) + b3) + b4 is (W4 W3 W2 W1) x + b: the
    learning path's linear-network step rests on this (book §3.2.6)."""
    torch.manual_seed(0)
    model = MLP(depth=3, hidden=16, activation="identity").double()
    linears = [m for m in model.net if isinstance(m, nn.Linear)]
    weight, bias = torch.eye(784, dtype=torch.float64), torch.zeros(784, dtype=torch.float64)
    for layer in linears:
        weight, bias = layer.weight @ weight, layer.weight @ bias + layer.bias
    x = torch.randn(7, 1, 28, 28, dtype=torch.float64)
    assert weight.shape == (10, 784)  # softmax regression's one matrix
    torch.testing.assert_close(model(x), x.flatten(1) @ weight.T + bias)
    relu = MLP(depth=3, hidden=16, activation="relu").double()
    relu.load_state_dict(model.state_dict())
    assert not torch.allclose(relu(x), model(x))  # ReLU breaks the product apart


def test_every_list_of_activations_shown_to_users_names_them_all():
    """ACTIVATIONS is the one list; the MLP's --help (its docstring), mnist_mlp.yaml's comment and the
    README's options table repeat it for readers, and must not fall behind."""
    from helpers import REPO

    docstring = MLP.__doc__.split("activation:")[1].split("dropout:")[0]
    config_line = next(line for line in (REPO / "experiments" / "mnist_mlp.yaml").read_text().splitlines()
                       if line.strip().startswith("activation:"))
    readme_row = next(line for line in (REPO / "README.md").read_text().splitlines()
                      if line.startswith("| model | "))
    for name in ACTIVATIONS:
        for where, text in (("MLP docstring", docstring), ("mnist_mlp.yaml", config_line), ("README", readme_row)):
            assert re.search(rf"\b{name}\b", text), f"{where} does not name activation {name}"
