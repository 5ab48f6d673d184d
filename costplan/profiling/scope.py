"""Which component of the reference model is running right now, in forward and in backward.

Forward (and recomputation, which reruns module forwards): a stack kept by forward hooks on every module
that belongs to a component. Backward: the component whose forward created the autograd node the engine is
executing; each component module's forward hook tags the nodes between its inputs and outputs.

torch's own module tracker (used by FlopCounterMode) keeps a *set* of active modules and, during the
recomputation that a checkpointed layer runs inside another module's backward, credits that work to both;
this scope credits every op to exactly one component.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from costplan.profiling.model import component_of
from costplan.profiling.private import current_autograd_node, tree_leaves

OUTSIDE = "outside"       # work or memory outside every component module
_TAG = "costplan_component"


class ComponentScope:
    """Installs the hooks on `model` while entered; `current()` names the running component or OUTSIDE."""

    def __init__(self, model: nn.Module, tag_graph: bool = False):
        self.model = model
        self.tag_graph = tag_graph
        self.stack: list[str] = []
        self.extra: list[str] = []

    def __enter__(self) -> ComponentScope:
        self.handles = []
        for name, module in self.model.named_modules():
            component = component_of(name)
            if component is None:
                continue
            self.handles.append(module.register_forward_pre_hook(self._enter(component)))
            # always_call: a recomputation that torch stops early (its checkpoint's early stop) leaves a module's
            # forward by an exception, and the stack must still pop
            self.handles.append(module.register_forward_hook(self._leave(component), always_call=True))
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        for handle in self.handles:
            handle.remove()

    @contextmanager
    def within(self, component: str) -> Iterator[None]:
        """Credit work done outside the model (the loss) to a component."""
        self.extra.append(component)
        try:
            yield
        finally:
            self.extra.pop()

    def current(self) -> str:
        if self.stack:
            return self.stack[-1]
        if self.extra:
            return self.extra[-1]
        node = current_autograd_node()
        if node is not None:
            return node.metadata.get(_TAG, OUTSIDE)
        return OUTSIDE

    def _enter(self, component: str):  # noqa: ANN202
        def hook(module, args) -> None:  # noqa: ANN001
            self.stack.append(component)
        return hook

    def _leave(self, component: str):  # noqa: ANN202
        def hook(module, args, output) -> None:  # noqa: ANN001
            self.stack.pop()
            if self.tag_graph and output is not None:
                _tag_nodes(component, args, output)
        return hook


def _tag_nodes(component: str, inputs, output) -> None:  # noqa: ANN001
    """Tag the autograd nodes created between a module's inputs and its output (inner modules tag first)."""
    tensors = [t for t in tree_leaves(inputs) if isinstance(t, torch.Tensor)]
    stop = {t.grad_fn for t in tensors if t.grad_fn is not None}
    todo = [t.grad_fn for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    seen = set()
    while todo:
        node = todo.pop()
        if node is None or node in stop or node in seen:
            continue
        seen.add(node)
        node.metadata.setdefault(_TAG, component)
        todo.extend(child for child, _ in node.next_functions)
