"""``lit-nn generate``: sample text from a char-RNN checkpoint, streamed to stdout.

The checkpoint carries the vocabulary (the model's ``vocab`` hyperparameter), so no corpus
is needed. The model is rebuilt from the checkpoint's hyperparameters and weights directly
(:func:`lit_nn.checkpoints.load_checkpoint`, ``weights_only=True``: no code from the file runs).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import torch

from lit_nn.checkpoints import load_checkpoint
from lit_nn.errors import UserError, check_positive
from lit_nn.models.char_rnn import CharRNN


def load_char_rnn(path: str | Path) -> CharRNN:
    """A CharRNN from a Lightning checkpoint; a missing, unreadable or foreign file is a UserError."""
    checkpoint = load_checkpoint(path)
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict) or not hparams.get("vocab"):
        raise UserError(f"{path} is not a char-RNN checkpoint (it has no vocabulary); train one with "
                        "`lit-nn fit -c experiments/char_rnn.yaml`")
    accepted = set(inspect.signature(CharRNN.__init__).parameters) - {"self"}
    model = CharRNN(**{k: v for k, v in hparams.items() if k in accepted})
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise UserError(f"checkpoint {path} does not match its own hyperparameters: {str(err)[:300]}") from None
    return model.eval()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit-nn generate",
        description="Sample text from a char-RNN checkpoint (lit-nn fit -c experiments/char_rnn.yaml) "
                    "and stream it to stdout.",
        epilog="example: lit-nn generate --ckpt mlruns/checkpoints/<run id>/best.ckpt --prime 'ROMEO:' "
               "--length 500 --temperature 0.8 --top_k 40 --seed 0",
    )
    parser.add_argument("--ckpt", required=True, metavar="PATH",
                        help="char-RNN checkpoint (.ckpt) written by `lit-nn fit`; the MLflow run's "
                             "checkpoint_dir tag says where")
    parser.add_argument("--prime", default="\n",
                        help="text the sample starts from; it is printed first and every character must "
                             "be in the model's vocabulary (default: a newline)")
    parser.add_argument("--length", type=int, default=500, help="characters to generate after the prime (default 500)")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="divides the logits: <1 is more conservative, >1 more random, 0 is greedy "
                             "(always the most likely character) (default 0.8)")
    parser.add_argument("--top_k", type=int, default=40,
                        help="draw only among the k most likely characters; 0 means all (default 40)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the random draws: the same seed gives the same text "
                             "(default: a different sample each time)")
    return parser


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``lit-nn generate``."""
    args = build_parser().parse_args(argv)
    check_positive("--length", args.length)
    check_positive("--temperature", args.temperature, allow_zero=True)
    check_positive("--top_k", args.top_k, allow_zero=True)
    model = load_char_rnn(args.ckpt)
    generator = torch.Generator()
    if args.seed is not None:
        generator.manual_seed(args.seed)
    else:
        generator.seed()
    chars = model.sample(args.prime, args.length, args.temperature, args.top_k or None, generator)
    first = next(chars)  # the prime is checked against the vocabulary here, before anything is printed
    out = sys.stdout
    out.write(args.prime + first)
    for ch in chars:
        out.write(ch)
        out.flush()  # stream: a learner watches the text appear
    out.write("\n")
    out.flush()
