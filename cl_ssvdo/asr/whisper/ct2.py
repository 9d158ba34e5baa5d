"""Reader (and writer) of CTranslate2 ``model.bin`` files, binary version 6, in pure Python/torch.

Layout (all integers little-endian)::

    uint32 version (6)
    string spec name ("WhisperSpec")          string = uint16 length incl. NUL, bytes, NUL
    uint32 spec revision (3 for Whisper)
    uint32 variable count
    per variable: string name, uint8 rank, uint32 dims[rank], uint8 dtype, uint32 byte count, data
    uint32 alias count, then (string alias, string target) pairs

dtype ids follow CTranslate2's ``DataType`` enum: 0 float32, 1 int8, 2 int16, 3 int32,
4 float16, 5 bfloat16. Scalars (rank 0) hold flags such as ``encoder/num_heads``.

>>> import tempfile, torch
>>> path = tempfile.mkdtemp() + "/model.bin"
>>> write_model_bin(path, CT2Model("WhisperSpec", 3, {"w": torch.ones(2, 3, dtype=torch.float16)}))
>>> m = read_model_bin(path)
>>> m.spec, m.variables["w"].shape, m.variables["w"].dtype
('WhisperSpec', torch.Size([2, 3]), torch.float16)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import torch

__all__ = [
    "BINARY_VERSION",
    "CT2FormatError",
    "CT2Model",
    "CT2TruncatedError",
    "CT2UnknownDtypeError",
    "CT2VersionError",
    "read_model_bin",
    "write_model_bin",
]

BINARY_VERSION = 6

_DTYPES: dict[int, torch.dtype] = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}
_DTYPE_IDS = {v: k for k, v in _DTYPES.items()}


class CT2FormatError(ValueError):
    """A ``model.bin`` that is not a readable CTranslate2 v6 file (the message names the file)."""


class CT2VersionError(CT2FormatError):
    """Bad magic: the first uint32 is not binary version 6 (or the spec name is unreadable)."""


class CT2TruncatedError(CT2FormatError):
    """The file ends before the layout says it should (or has bytes after the aliases)."""


class CT2UnknownDtypeError(CT2FormatError):
    """A variable's dtype id is not one of CTranslate2's (0..5)."""


@dataclass
class CT2Model:
    """The content of one ``model.bin``.

    ``variables`` maps names such as ``encoder/layer_0/ffn/linear_0/weight`` to tensors in
    their stored dtype and shape (``[out, in]`` for linears); ``aliases`` maps an alias name
    to the variable it shares (``decoder/projection/weight`` -> ``decoder/embeddings/weight``).
    """

    spec: str
    revision: int
    variables: dict[str, torch.Tensor]
    aliases: dict[str, str] = field(default_factory=dict)
    version: int = BINARY_VERSION

    def get(self, name: str) -> torch.Tensor:
        """The tensor of ``name``, following an alias; ``KeyError`` naming it if absent."""
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise KeyError(f"variable {name!r} not in the CTranslate2 model ({self.spec})")
        return self.variables[target]

    def scalar(self, name: str) -> int:
        """An integer flag stored as a rank-0 variable (e.g. ``encoder/num_heads``)."""
        return int(self.get(name).item())


class _Reader:
    def __init__(self, fh: BinaryIO, path: Path, size: int) -> None:
        self.fh, self.path, self.size = fh, path, size

    def take(self, n: int, what: str) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise CT2TruncatedError(
                f"{self.path}: truncated CTranslate2 model.bin: needed {n} bytes for {what} "
                f"at offset {self.fh.tell() - len(data)}, file has {self.size} bytes"
            )
        return data

    def uint(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.uint("H", what)
        raw = self.take(n, what)
        if n == 0 or raw[-1] != 0:
            raise CT2FormatError(f"{self.path}: {what} is not a NUL-terminated string")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CT2FormatError(f"{self.path}: {what} is not UTF-8") from exc


def read_model_bin(path: str | Path) -> CT2Model:
    """Read a CTranslate2 v6 ``model.bin`` into tensors (stored dtype, no conversion).

    Raises :class:`CT2VersionError` (bad magic/version), :class:`CT2TruncatedError`,
    :class:`CT2UnknownDtypeError` or :class:`CT2FormatError`, each naming ``path``;
    ``FileNotFoundError`` if it does not exist.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        r = _Reader(fh, path, size)
        version = r.uint("I", "the binary version")
        if version != BINARY_VERSION:
            raise CT2VersionError(
                f"{path}: not a CTranslate2 model.bin of binary version {BINARY_VERSION} "
                f"(first uint32 is {version}; only version {BINARY_VERSION} is supported)"
            )
        spec = r.string("the spec name")
        revision = r.uint("I", "the spec revision")
        count = r.uint("I", "the variable count")
        variables: dict[str, torch.Tensor] = {}
        for i in range(count):
            name = r.string(f"the name of variable {i}")
            rank = r.uint("B", f"the rank of {name}")
            shape = [r.uint("I", f"dim {d} of {name}") for d in range(rank)]
            dtype_id = r.uint("B", f"the dtype of {name}")
            if dtype_id not in _DTYPES:
                raise CT2UnknownDtypeError(
                    f"{path}: variable {name!r} has unknown dtype id {dtype_id} "
                    f"(known: {', '.join(f'{k}={v}' for k, v in _DTYPES.items())})"
                )
            dtype = _DTYPES[dtype_id]
            nbytes = r.uint("I", f"the byte count of {name}")
            numel = 1
            for d in shape:
                numel *= d
            expected = numel * torch.empty((), dtype=dtype).element_size()
            if nbytes != expected:
                raise CT2FormatError(
                    f"{path}: variable {name!r} {shape} {dtype} declares {nbytes} bytes, "
                    f"expected {expected}"
                )
            raw = r.take(nbytes, f"the data of {name}")
            tensor = (
                torch.frombuffer(bytearray(raw), dtype=dtype)
                if nbytes
                else torch.empty(0, dtype=dtype)
            )
            variables[name] = tensor.reshape(shape)
        n_alias = r.uint("I", "the alias count")
        aliases = {}
        for i in range(n_alias):
            alias = r.string(f"alias {i}")
            aliases[alias] = r.string(f"the target of alias {alias}")
        rest = len(fh.read())
        if rest:
            raise CT2FormatError(f"{path}: {rest} unexpected bytes after the alias table")
    for alias, target in aliases.items():
        if target not in variables:
            raise CT2FormatError(f"{path}: alias {alias!r} points to missing variable {target!r}")
    return CT2Model(spec, revision, variables, aliases, version)


def write_model_bin(path: str | Path, model: CT2Model) -> None:
    """Write ``model`` in the v6 layout (the inverse of :func:`read_model_bin`)."""

    def string(fh: BinaryIO, s: str) -> None:
        b = s.encode("utf-8")
        fh.write(struct.pack("<H", len(b) + 1) + b + b"\0")

    with open(path, "wb") as fh:
        fh.write(struct.pack("<I", model.version))
        string(fh, model.spec)
        fh.write(struct.pack("<II", model.revision, len(model.variables)))
        for name, t in model.variables.items():
            if t.dtype not in _DTYPE_IDS:
                raise ValueError(f"variable {name!r}: dtype {t.dtype} has no CTranslate2 id")
            string(fh, name)
            fh.write(struct.pack("<B", t.dim()) + struct.pack(f"<{t.dim()}I", *t.shape))
            data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            fh.write(struct.pack("<BI", _DTYPE_IDS[t.dtype], len(data)) + data)
        fh.write(struct.pack("<I", len(model.aliases)))
        for alias, target in model.aliases.items():
            string(fh, alias)
            string(fh, target)
