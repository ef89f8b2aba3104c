"""K copies of a network as one module: stacked parameters, one vectorised forward pass.

:class:`PackedModule` holds the parameters and buffers of K networks of identical structure stacked
along a new first dimension (``torch.func.stack_module_state``) and runs them with
``torch.func.functional_call`` under ``torch.func.vmap``: inputs of shape ``(K·B, ...)`` — K runs'
batches one after another — give outputs of shape ``(K·B, ...)``. Convolutions and matrix products
of all K networks become one batched kernel each (vmap's batching rules turn a batched-weight
convolution into a grouped one), so small networks stop paying Python and kernel-launch overhead K
times. BatchNorm keeps one set of statistics per network (its running buffers are stacked too).

``nn.Dropout`` (and :class:`benchmark.dropout.FastDropout`, which the engine puts in its place)
draws each network's masks outside the vectorised pass, one network after another and each inside
its own RNG stream (``rng_streams``, set by the pack), in the order its forward pass calls its
dropout layers, with :func:`benchmark.dropout.dropout_mask`: the masks a lone run of that network
draws in the engine (bitwise on CPU). Other random layers are not supported.

Submodules are reachable as on the original (``packed.f(x)``, ``packed.g(feat)``), and non-module
attributes (``packed.feat_shape``) are the first network's. Because the stacked parameters are
ordinary ``nn.Parameter`` tensors, any element-wise optimiser (SGD with momentum and weight decay,
Adam) stepping them is K independent optimisers.
"""
from __future__ import annotations

import copy
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils._pytree import tree_map

from .dropout import FastDropout, dropout_mask


def _mangle(name: str) -> str:
    return name.replace(".", "/")  # parameter names may not contain dots


class PackedModule(nn.Module):
    """``len(members)`` networks of one structure as one module (see the module docstring).

    Args:
        members: networks of identical structure (their current values are copied).
        rng_streams: one re-enterable context manager per network that makes its RNG stream current
            (see :class:`benchmark.pack_data.PackedData`); its dropout masks are drawn inside it.
            None: every network's masks come from the process's RNG, one network after another.
    """

    def __init__(self, members: list[nn.Module], rng_streams: list[AbstractContextManager] | None = None):
        super().__init__()
        if not members:
            raise ValueError("PackedModule needs at least one network")
        self.size = len(members)
        params, buffers = stack_module_state(members)
        self._param_names = list(params)
        self._buffer_names = list(buffers)
        for name, value in params.items():
            self.register_parameter(_mangle(name), nn.Parameter(value.detach().clone()))
        for name, value in buffers.items():
            self.register_buffer(_mangle(name), value.clone())
        template = copy.deepcopy(members[0])
        for name, module in list(template.named_modules()):
            if type(module) in (nn.Dropout, FastDropout):
                _set_submodule(template, name, _MaskDropout(module.p))
        object.__setattr__(self, "_template", template)  # not a submodule: its own tensors are never used
        object.__setattr__(self, "_calls", {})
        object.__setattr__(self, "_dropout_calls", {})
        self.rng_streams = rng_streams
        template.train(members[0].training)
        self.train(members[0].training)

    # -- running -----------------------------------------------------------------------------
    def _tensors(self, path: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        prefix = path + "." if path else ""
        names = self._calls.get(path)
        if names is None:
            names = ([(n[len(prefix):], _mangle(n)) for n in self._param_names if n.startswith(prefix)],
                     [(n[len(prefix):], _mangle(n)) for n in self._buffer_names if n.startswith(prefix)])
            self._calls[path] = names
        pnames, bnames = names
        return ({short: self._parameters[m] for short, m in pnames}, {short: self._buffers[m] for short, m in bnames})

    def call(self, path: str, *args: Any) -> Any:
        """Run submodule ``path`` ("" = the whole network) of every member on its slice of ``args``."""
        module = self._template.get_submodule(path) if path else self._template
        params, buffers = self._tensors(path)
        k = self.size

        def one(p, b, *a):
            return functional_call(module, (p, b), a)

        split = [a.unflatten(0, (k, -1)) if torch.is_tensor(a) else a for a in args]
        buffers = {**buffers, **self._dropout_masks(path, module, params, buffers, split)}
        if k == 1:  # no vmap: a pack of one costs what the network costs
            return functional_call(module, ({n: t[0] for n, t in params.items()},
                                            {n: t[0] for n, t in buffers.items()}), args)
        dims = tuple(0 if torch.is_tensor(a) else None for a in args)
        out = vmap(one, in_dims=(0, 0, *dims), randomness="different")(params, buffers, *split)
        return tree_map(lambda t: t.flatten(0, 1) if torch.is_tensor(t) else t, out)

    def _dropout_masks(self, path: str, module: nn.Module, params, buffers, split) -> dict[str, torch.Tensor]:
        """Stacked masks (K, ...) for the dropout layers a training forward pass of ``module`` calls,
        each network's drawn in its own stream, in call order (found once per input shape by a pass
        on the meta device)."""
        if not self.training or not any(isinstance(m, _MaskDropout) for m in module.modules()):
            return {}
        key = (path, tuple((tuple(a.shape[1:]), a.dtype) if torch.is_tensor(a) else a for a in split))
        calls = self._dropout_calls.get(key)
        if calls is None:
            calls = []
            hooks = [m.register_forward_hook(lambda m, inp, out, name=name: calls.append((name, inp[0].shape, m.p)))
                     for name, m in module.named_modules() if isinstance(m, _MaskDropout)]
            meta = [torch.empty(a.shape[1:], dtype=a.dtype, device="meta") if torch.is_tensor(a) else a for a in split]
            try:
                functional_call(module, ({n: torch.empty_like(t[0], device="meta") for n, t in params.items()},
                                         {n: torch.empty_like(t[0], device="meta") for n, t in buffers.items()}),
                                tuple(meta))
            finally:
                for h in hooks:
                    h.remove()
            if len({name for name, _, _ in calls}) < len(calls):
                raise ValueError("PackedModule: a dropout layer called twice in one forward pass cannot be packed")
            self._dropout_calls[key] = calls
        dev = next(a.device for a in split if torch.is_tensor(a))
        streams = self.rng_streams or [nullcontext()] * self.size
        drawn = []
        for stream in streams:
            with stream:
                drawn.append([dropout_mask(shape, p, dev) for _, shape, p in calls])
        return {f"{name}.mask": torch.stack([d[i] for d in drawn]) for i, (name, _, _) in enumerate(calls)}

    def forward(self, *args: Any) -> Any:
        return self.call("", *args)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            template = self.__dict__.get("_template")
            if template is None or not hasattr(template, name):
                raise
            value = getattr(template, name)
            return _PackedPath(self, name) if isinstance(value, nn.Module) else value

    def __iter__(self):
        """The template's children as packed submodules (a packed ``nn.ModuleList`` iterates like one)."""
        return (_PackedPath(self, name) for name, _ in self._template.named_children())

    def __len__(self) -> int:
        return len(list(self._template.children()))

    def __bool__(self) -> bool:
        return True

    # -- mode, device, unpacking ---------------------------------------------------------------
    def train(self, mode: bool = True) -> "PackedModule":
        super().train(mode)
        template = self.__dict__.get("_template")
        if template is not None:
            template.train(mode)
        return self

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self._template._apply(fn, recurse)
        return self

    def member(self, k: int) -> nn.Module:
        """Network ``k`` as a module of its own (a copy: changing it leaves the pack alone)."""
        net = copy.deepcopy(self._template)
        for name, module in list(net.named_modules()):
            if isinstance(module, _MaskDropout):
                _set_submodule(net, name, FastDropout(module.p))
        net.load_state_dict(self.member_state(k))
        return net

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k``'s state dict (parameters and buffers as the original network names them)."""
        names = self._param_names + self._buffer_names
        return {n: getattr(self, _mangle(n))[k].detach() for n in names}


class _PackedPath:
    """A submodule of a :class:`PackedModule` (``packed.f``), callable like the original one."""

    def __init__(self, owner: PackedModule, path: str):
        self.owner, self.path = owner, path

    def __call__(self, *args: Any) -> Any:
        return self.owner.call(self.path, *args)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.owner._template.get_submodule(self.path), name)
        return _PackedPath(self.owner, f"{self.path}.{name}") if isinstance(value, nn.Module) else value


class _MaskDropout(nn.Module):
    """``nn.Dropout`` inside a :class:`PackedModule`: multiplies by the mask the pack drew for this
    network (its ``mask`` buffer, supplied per call); the identity in eval mode or without a mask."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.register_buffer("mask", torch.ones(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask if self.training and self.mask.numel() else x


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)
