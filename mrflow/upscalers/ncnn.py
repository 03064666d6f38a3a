"""Read ncnn ``.param``/``.bin`` networks and turn Real-ESRGAN ones into PyTorch state dicts.

An ncnn network is a text graph (``.param``) plus one flat weight file (``.bin``) holding the weights
of every layer that has any, in graph order. Only the layer types the Real-ESRGAN networks use are
understood; anything else is an error rather than a guess, and so is a ``.bin`` with bytes left over
or missing, so a successful conversion accounts for every weight in the file.

Key names are the official Real-ESRGAN ones (``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last`` for RRDBNet; ``body.N`` for SRVGGNetCompact).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

__all__ = ["NcnnFormatError", "NcnnLayer", "convert_ncnn", "parse_param", "read_weights"]

_PARAM_MAGIC = 7767517
_FP16_TAG = 0x01306B47
_FP32_TAG = 0x00000000
_ACTIVATION_LEAKY_RELU = 2
# Layer types that carry no weights and that the Real-ESRGAN graphs use.
_WEIGHTLESS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle"}

Arch = Literal["rrdb", "compact"]


class NcnnFormatError(ValueError):
    """The ``.param``/``.bin`` pair is malformed or not a network this converter understands."""


@dataclass(frozen=True)
class NcnnLayer:
    """One line of a ``.param`` graph: ``type name n_in n_out inputs... outputs... key=value...``."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, str] = field(default_factory=dict)

    def int_param(self, key: int, default: int | None = None) -> int:
        if key not in self.params:
            if default is None:
                raise NcnnFormatError(f"layer {self.name} ({self.type}) lacks parameter {key}")
            return default
        return int(self.params[key])

    def float_array_param(self, key: int) -> tuple[float, ...]:
        """Array parameters are stored under ``-23300 - key`` as ``count,v1,v2,...``."""
        raw = self.params.get(-23300 - key)
        if raw is None:
            return ()
        count, *values = raw.split(",")
        if int(count) != len(values):
            raise NcnnFormatError(f"layer {self.name}: array parameter {key} has a wrong count")
        return tuple(float(v) for v in values)


def parse_param(text: str) -> list[NcnnLayer]:
    """Parse the text of an ncnn ``.param`` file into its layers, in file order."""
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != [str(_PARAM_MAGIC)]:
        raise NcnnFormatError(f"not an ncnn .param file (magic {lines[0] if lines else 'missing'})")
    if len(lines) < 2 or len(lines[1]) != 2:
        raise NcnnFormatError("ncnn .param file lacks its 'layer_count blob_count' line")
    layer_count = int(lines[1][0])
    layers = [_parse_layer(tokens) for tokens in lines[2:]]
    if len(layers) != layer_count:
        raise NcnnFormatError(f".param declares {layer_count} layers but holds {len(layers)}")
    return layers


def _parse_layer(tokens: list[str]) -> NcnnLayer:
    if len(tokens) < 4:
        raise NcnnFormatError(f"malformed layer line: {' '.join(tokens)!r}")
    layer_type, name, n_in, n_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
    blobs = tokens[4 : 4 + n_in + n_out]
    if len(blobs) != n_in + n_out:
        raise NcnnFormatError(f"layer {name}: expected {n_in + n_out} blob names")
    params: dict[int, str] = {}
    for item in tokens[4 + n_in + n_out :]:
        key, sep, value = item.partition("=")
        if not sep:
            raise NcnnFormatError(f"layer {name}: malformed parameter {item!r}")
        params[int(key)] = value
    return NcnnLayer(layer_type, name, tuple(blobs[:n_in]), tuple(blobs[n_in:]), params)


class _Reader:
    """Sequential reader over the ``.bin`` bytes that refuses to read past the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, nbytes: int, what: str) -> bytes:
        end = self.offset + nbytes
        if end > len(self.data):
            raise NcnnFormatError(
                f".bin ends early: {what} needs {nbytes} bytes at offset {self.offset}, file has {len(self.data)}"
            )
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def tagged_array(self, count: int, what: str) -> np.ndarray:
        """An array stored with a 4-byte storage tag (ncnn ``ModelBin::load(w, 0)``)."""
        (tag,) = struct.unpack("<I", self.take(4, f"{what} tag"))
        if tag == _FP16_TAG:
            nbytes = count * 2
            raw = self.take((nbytes + 3) // 4 * 4, what)  # fp16 data is padded to 4 bytes
            return np.frombuffer(raw[:nbytes], dtype="<f2").astype(np.float32)
        if tag == _FP32_TAG:
            return np.frombuffer(self.take(count * 4, what), dtype="<f4").copy()
        raise NcnnFormatError(f"{what}: unsupported weight storage tag 0x{tag:08X} (quantized?)")

    def raw_float32(self, count: int, what: str) -> np.ndarray:
        """An untagged float32 array (ncnn ``ModelBin::load(w, 1)``)."""
        return np.frombuffer(self.take(count * 4, what), dtype="<f4").copy()


@dataclass(frozen=True)
class _Weights:
    """Weights of one weight-bearing layer, in graph order."""

    layer: NcnnLayer
    tensors: dict[str, torch.Tensor]  # "weight" and, if present, "bias"


def read_weights(layers: list[NcnnLayer], data: bytes) -> list[_Weights]:
    """Read the weights of every ``Convolution`` and ``PReLU`` layer, consuming all of ``data``.

    Raises:
        NcnnFormatError: on an unknown layer type, bytes missing, or bytes left over.
    """
    reader = _Reader(data)
    weights: list[_Weights] = []
    for layer in layers:
        if layer.type == "Convolution":
            weights.append(_read_convolution(layer, reader))
        elif layer.type == "PReLU":
            slopes = reader.raw_float32(layer.int_param(0), f"{layer.name} slopes")
            weights.append(_Weights(layer, {"weight": torch.from_numpy(slopes)}))
        elif layer.type not in _WEIGHTLESS:
            raise NcnnFormatError(f"layer {layer.name}: unsupported layer type {layer.type}")
    if reader.offset != len(data):
        raise NcnnFormatError(f".bin has {len(data) - reader.offset} bytes left over after the last layer")
    return weights


def _read_convolution(layer: NcnnLayer, reader: _Reader) -> _Weights:
    out_channels = layer.int_param(0)
    kernel = layer.int_param(1)
    if layer.int_param(11, kernel) != kernel or layer.int_param(3, 1) != 1 or layer.int_param(2, 1) != 1:
        raise NcnnFormatError(f"layer {layer.name}: only square, stride-1, undilated kernels are supported")
    weight_count = layer.int_param(6)
    in_channels, remainder = divmod(weight_count, out_channels * kernel * kernel)
    if remainder:
        raise NcnnFormatError(f"layer {layer.name}: weight count {weight_count} does not fit its shape")
    weight = reader.tagged_array(weight_count, f"{layer.name} weights")
    tensors = {"weight": torch.from_numpy(weight).reshape(out_channels, in_channels, kernel, kernel)}
    if layer.int_param(5, 0):
        tensors["bias"] = torch.from_numpy(reader.raw_float32(out_channels, f"{layer.name} bias"))
    return _Weights(layer, tensors)


def _rrdb_keys(num_convs: int) -> list[tuple[str, bool]]:
    """Official RRDBNet (×4) convolution names in forward order, each with "is followed by LeakyReLU"."""
    num_blocks, remainder = divmod(num_convs - 6, 15)
    if remainder or num_blocks < 1:
        raise NcnnFormatError(f"{num_convs} convolutions do not form an RRDBNet ×4")
    keys = [("conv_first", False)]
    for block in range(num_blocks):
        for rdb in (1, 2, 3):
            keys += [(f"body.{block}.rdb{rdb}.conv{j}", j < 5) for j in range(1, 6)]
    keys += [("conv_body", False), ("conv_up1", True), ("conv_up2", True), ("conv_hr", True)]
    return keys + [("conv_last", False)]


def _rrdb_state_dict(weights: list[_Weights]) -> dict[str, torch.Tensor]:
    if any(w.layer.type != "Convolution" for w in weights):
        raise NcnnFormatError("an RRDBNet graph holds only convolutions with weights")
    state: dict[str, torch.Tensor] = {}
    for (key, leaky), w in zip(_rrdb_keys(len(weights)), weights, strict=True):
        activation = w.layer.int_param(9, 0)
        slope = w.layer.float_array_param(10)
        expected = (_ACTIVATION_LEAKY_RELU, (0.2,)) if leaky else (0, ())
        if (activation, slope) != expected:
            raise NcnnFormatError(f"layer {w.layer.name} (as {key}): activation does not match RRDBNet")
        state.update({f"{key}.{kind}": t for kind, t in w.tensors.items()})
    return state


def _compact_state_dict(weights: list[_Weights]) -> dict[str, torch.Tensor]:
    expected_types = ["Convolution", "PReLU"] * ((len(weights) - 1) // 2) + ["Convolution"]
    if [w.layer.type for w in weights] != expected_types:
        raise NcnnFormatError("an SRVGGNetCompact graph alternates Convolution and PReLU, ending in a conv")
    state: dict[str, torch.Tensor] = {}
    for index, w in enumerate(weights):
        state.update({f"body.{index}.{kind}": t for kind, t in w.tensors.items()})
    return state


def convert_ncnn(param_path: Path, bin_path: Path, arch: Arch) -> dict[str, torch.Tensor]:
    """Convert a Real-ESRGAN ncnn network into a float32 state dict with the official key names.

    Args:
        param_path: the ``.param`` graph.
        bin_path: the ``.bin`` weights; every byte must be consumed.
        arch: ``"rrdb"`` (RRDBNet ×4) or ``"compact"`` (SRVGGNetCompact).

    Raises:
        NcnnFormatError: naming the files, if they are malformed or not of ``arch``.
    """
    try:
        layers = parse_param(param_path.read_text(encoding="ascii"))
        weights = read_weights(layers, bin_path.read_bytes())
        if arch == "rrdb":
            return _rrdb_state_dict(weights)
        if arch == "compact":
            return _compact_state_dict(weights)
        raise NcnnFormatError(f"unknown architecture {arch!r}")
    except (NcnnFormatError, ValueError, UnicodeDecodeError) as exc:
        raise NcnnFormatError(f"cannot convert {param_path.name} + {bin_path.name}: {exc}") from exc
