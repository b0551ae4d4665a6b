"""Fold each inference-mode BatchNorm into the convolution that feeds it: one pass over memory less per pair.

In eval mode a BatchNorm is a fixed per-channel affine map, so ``bn(conv(x))`` is one convolution with scaled
weights and a bias (the fold ONNX Runtime and TensorRT make on export). On a CPU the BatchNorm passes were 7 % of
the detector's forward (docs/scoring.md, "Session 10"). Torch's eager mode does not fold by itself.

Which convolution feeds which BatchNorm is read from a real forward (hooks), not guessed from the order modules
were registered in, and the folded network is checked against the original on the same input before it is used:
a network where a convolution's raw output is also read elsewhere (which folding would change) is left as it was.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from timm.layers import BatchNormAct2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

#: Side of the probe image when the network does not say what size it runs at (``input_size``).
PROBE_SIZE = 64

#: Agreement the folded network must reach with the original, relative to each output's largest magnitude.
FOLD_TOLERANCE = 1e-4


def fold_batch_norms(model: nn.Module, example: torch.Tensor | None = None) -> tuple[nn.Module, int]:
    """A copy of eval-mode ``model`` with every foldable convolution → BatchNorm pair folded, and how many.

    Args:
        model: A network in eval mode whose ``forward`` takes one image batch.
        example: An input batch for the probe forward; by default one random image of ``model.input_size``
            pixels (or :data:`PROBE_SIZE`), on the model's device.

    Returns:
        ``(folded copy, pairs folded)``; ``(model, 0)`` itself when nothing folds, when the probe forward fails
        or when the folded copy does not agree with ``model`` (with a warning saying which).
    """
    if model.training:
        raise ValueError(
            "fold_batch_norms needs a model in eval mode (call model.eval() first): folding uses the "
            "BatchNorm running statistics, which training mode ignores"
        )
    if example is None:
        example = _probe_input(model)
    pairs, output = _conv_batch_norm_pairs(model, example)
    if not pairs:
        return model, 0
    expected = list(_tensors(output))
    if not expected:
        warnings.warn(
            f"{type(model).__name__}'s output holds no tensors to check a fold against; it runs unfolded",
            stacklevel=2,
        )
        return model, 0
    folded = copy.deepcopy(model)
    names = {id(module): name for name, module in model.named_modules()}
    for conv, norm in pairs:
        _fold_pair(folded, names[id(conv)], names[id(norm)])
    with torch.no_grad():
        got = list(_tensors(folded(example)))
    if len(got) != len(expected) or not all(_agree(a, b) for a, b in zip(got, expected, strict=True)):
        warnings.warn(
            f"folding BatchNorm into convolutions changed {type(model).__name__}'s output; it runs unfolded "
            "(slower, same results). Please report this network.",
            stacklevel=2,
        )
        return model, 0
    return folded, len(pairs)


def _probe_input(model: nn.Module) -> torch.Tensor:
    size = getattr(model, "input_size", PROBE_SIZE)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    return torch.randn(1, 3, int(size), int(size), generator=torch.Generator().manual_seed(0)).to(device)


def _foldable_norm(module: nn.Module) -> bool:
    return type(module) is nn.BatchNorm2d or isinstance(module, BatchNormAct2d)


def _conv_batch_norm_pairs(
    model: nn.Module, example: torch.Tensor
) -> tuple[list[tuple[nn.Conv2d, nn.BatchNorm2d]], Any]:
    """(convolution, BatchNorm) pairs where the BatchNorm's input is exactly the convolution's untouched output,
    and the model's output on ``example``.

    Each module of a pair must run once per forward; a BatchNorm with hooks of its own (timm's feature hooks)
    is kept, since replacing it would drop them.
    """
    outputs: dict[int, tuple[nn.Conv2d, torch.Tensor, int]] = {}
    calls: dict[int, int] = {}
    found: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = []

    def after_conv(conv: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        calls[id(conv)] = calls.get(id(conv), 0) + 1
        outputs[id(output)] = (conv, output, output._version)  # type: ignore[assignment]

    def before_norm(norm: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        calls[id(norm)] = calls.get(id(norm), 0) + 1
        source = outputs.get(id(inputs[0]))
        if source is not None and source[1] is inputs[0] and source[2] == inputs[0]._version:
            found.append((source[0], norm))  # type: ignore[arg-type]

    norms = [m for m in model.modules() if _foldable_norm(m) and not (m._forward_hooks or m._forward_pre_hooks)]
    handles = [m.register_forward_hook(after_conv) for m in model.modules() if type(m) is nn.Conv2d]
    handles += [m.register_forward_pre_hook(before_norm) for m in norms]
    try:
        with torch.no_grad():
            output = model(example)
    except Exception as error:  # folding is an optimisation: the model still runs unfolded
        warnings.warn(
            f"could not probe {type(model).__name__} for BatchNorm folding ({error}); it runs unfolded", stacklevel=3
        )
        return [], None
    finally:
        for handle in handles:
            handle.remove()
    return [(conv, norm) for conv, norm in found if calls[id(conv)] == 1 and calls[id(norm)] == 1], output


def _fold_pair(root: nn.Module, conv_name: str, norm_name: str) -> None:
    """Scale the convolution in place (so hooks on it stay) and put what the BatchNorm did besides normalising in
    its place."""
    conv, norm = root.get_submodule(conv_name), root.get_submodule(norm_name)
    assert isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
    assert norm.running_mean is not None and norm.running_var is not None
    weight, bias = fuse_conv_bn_weights(
        conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
    )
    trainable = conv.weight.requires_grad
    conv.weight = nn.Parameter(weight.detach(), requires_grad=trainable)
    conv.bias = nn.Parameter(bias.detach(), requires_grad=trainable)
    rest: nn.Module = nn.Sequential(norm.drop, norm.act) if isinstance(norm, BatchNormAct2d) else nn.Identity()
    parent_name, _, child = norm_name.rpartition(".")
    setattr(root.get_submodule(parent_name), child, rest)


def _tensors(output: Any) -> Iterator[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, (list, tuple)):
        for item in output:
            yield from _tensors(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _tensors(item)


def _agree(got: torch.Tensor, expected: torch.Tensor) -> bool:
    if got.shape != expected.shape:
        return False
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return bool(torch.allclose(got.float(), expected.float(), rtol=FOLD_TOLERANCE, atol=FOLD_TOLERANCE * scale))
