"""A classifier head at the end of a model: found, named, and its input offered as the penultimate features.

A torchvision ResNet ends in ``fc``, a timm model in ``head`` / ``fc`` / ``classifier``, a Hugging Face
``*ForImageClassification`` in ``classifier``: the model's output is then C class logits, not the
representation SSL diagnostics are about. ``HeadProbe`` hooks the last ``nn.Linear`` with such a name;
when the forward's output *is* that layer's output, the layer's input (the penultimate features) is
recorded as the output ``"penultimate"`` and analysed by default, and the head is named in the result.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

HEAD_NAMES = ("fc", "head", "classifier", "heads", "last_linear", "logits")


def head_candidate(module: nn.Module) -> str | None:
    """Name of the last ``nn.Linear`` whose own name is a classifier name (fc, head, classifier, ...)."""
    found = None
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in HEAD_NAMES:
            found = name
    return found


class HeadProbe:
    """Hooks a candidate head; ``penultimate(out)`` is its input when ``out`` is the head's output."""

    def __init__(self, module: nn.Module) -> None:
        """Find and hook the candidate head of ``module`` (no hook when it has none)."""
        self.name = head_candidate(module)
        self._in: Tensor | None = None
        self._out: Tensor | None = None
        self._handle: Any = None
        if self.name is not None:
            head = dict(module.named_modules())[self.name]
            self._handle = head.register_forward_hook(self._hook)
            self.classes = int(head.out_features)

    def _hook(self, _m: nn.Module, inp: Any, out: Any) -> None:
        self._in = inp[0] if isinstance(inp, tuple) and inp else None
        self._out = out

    def penultimate(self, out: Tensor) -> Tensor | None:
        """The head's input when ``out`` is the head's output (the model ends in the head), else None."""
        if self._out is None or out is not self._out or self._in is None:
            return None
        return self._in

    def close(self) -> None:
        """Remove the hook."""
        if self._handle is not None:
            self._handle.remove()


__all__ = ["HEAD_NAMES", "HeadProbe", "head_candidate"]
