"""Reader for the IDX files MNIST and Fashion-MNIST ship in (``.gz`` or uncompressed)."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from lit_nn.core.errors import UserError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> torch.Tensor:
    """Read one IDX file into a tensor, rejecting truncated or corrupt files by name."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise UserError(f"cannot read IDX file {path}: it is truncated or corrupt ({err})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise UserError(f"{path} is not an IDX file (bad magic number); re-download it")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"IDX file {path} is truncated (header cut short); re-download it")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise UserError(
            f"IDX file {path} is truncated or corrupt: header promises {expected} bytes of data "
            f"for shape {shape}, file holds {len(raw) - header}; re-download it"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))


def write_idx(path: str | Path, tensor: torch.Tensor) -> None:
    """Write a uint8 tensor as IDX (gzip when the name ends in .gz); used by tests and tools."""
    path = Path(path)
    data = tensor.to(torch.uint8).numpy()
    blob = bytes([0, 0, 0x08, data.ndim]) + struct.pack(f">{data.ndim}I", *data.shape) + data.tobytes()
    path.write_bytes(gzip.compress(blob) if path.suffix == ".gz" else blob)
