"""Taps at any layer: ``module:<dotted.path>[:layout]`` names the output of any submodule of a
student or teacher (``module:net.layer3:tokens``), read through a forward hook, so a loss can
distil an intermediate layer of a model that exposes none by hand. The dotted path is the
module's name in ``model.named_modules()`` (``xbench list students -v`` shows the top ones).

The module's output (its first tensor, for a module returning a tuple; ``last_hidden_state`` for
a transformers output) is put in the layout the generic losses expect:

- no layout: the tensor as the module returns it;
- ``feature``: (B, D), the map averaged over every axis but channels;
- ``tokens``: (B, N, D), channels last: a video map's time steps (space averaged), a 2D map's
  cells, a sequence as it is;
- ``spatial``: a video map as (B, T, D, h, w), as the models' own ``spatial`` taps; a 2D map as it is.

Maps are read channels-first: (B, C, T, H, W) as torchvision's 3D networks give them, (B, C, H, W)
for 2D ones; (B, N, D) sequences; a 2D network run on each frame, whose outputs hold B x T rows,
is unfolded to (B, C, T, H, W). A model whose maps are channels-last (Swin's stages) names their
module-path prefixes in ``channels_last_taps``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from xbench.errors import ConfigError, IncompatibleError

PREFIX = "module:"
LAYOUTS = ("feature", "tokens", "spatial")


def is_module_tap(name: str | None) -> bool:
    return bool(name) and name.startswith(PREFIX)


def parse(name: str) -> tuple[str, str | None]:
    """``module:PATH[:LAYOUT]`` -> (PATH, LAYOUT or None); a bad name is a ConfigError."""
    path, _, layout = name[len(PREFIX):].partition(":")
    if not path or (layout and layout not in LAYOUTS):
        raise ConfigError(f"tap '{name}': expected module:<dotted.path>[:{'|'.join(LAYOUTS)}]")
    return path, layout or None


def first_tensor(out: Any) -> torch.Tensor | None:
    """The tensor a module's output stands for (see the module's docstring)."""
    if isinstance(out, torch.Tensor):
        return out
    hidden = getattr(out, "last_hidden_state", None)
    if isinstance(hidden, torch.Tensor):
        return hidden
    values = out.values() if isinstance(out, dict) else out if isinstance(out, (tuple, list)) else ()
    return next((v for v in values if isinstance(v, torch.Tensor)), None)


def as_layout(x: torch.Tensor, layout: str | None, batch: int, channels_last: bool, name: str) -> torch.Tensor:
    """A module's output ``x`` in ``layout``, for a forward of ``batch`` examples."""
    if layout is None:
        return x
    if channels_last and x.dim() >= 4:
        x = x.movedim(-1, 1)
    if x.shape[0] != batch and x.dim() == 4 and x.shape[0] % batch == 0:  # a 2D network per frame
        x = x.reshape(batch, x.shape[0] // batch, *x.shape[1:]).transpose(1, 2)
    if x.dim() == 5:  # (B, C, T, H, W)
        return {"feature": lambda: x.mean(dim=(2, 3, 4)), "tokens": lambda: x.mean(dim=(3, 4)).transpose(1, 2),
                "spatial": lambda: x.transpose(1, 2)}[layout]()
    if x.dim() == 4:  # (B, C, H, W)
        return {"feature": lambda: x.mean(dim=(2, 3)), "tokens": lambda: x.flatten(2).transpose(1, 2),
                "spatial": lambda: x}[layout]()
    if x.dim() in (2, 3) and layout != "spatial":
        if x.dim() == 3:
            return x.mean(dim=1) if layout == "feature" else x
        return x if layout == "feature" else x.unsqueeze(1)
    raise IncompatibleError(f"tap '{name}': the module's output has shape {tuple(x.shape)}, which has no "
                            f"{layout} layout")


def install(model: nn.Module, taps: Iterable[str], who: str) -> None:
    """Forward hooks on ``model`` that add each ``module:`` tap of ``taps`` to its outputs."""
    wanted = {t: parse(t) for t in dict.fromkeys(taps) if is_module_tap(t)}
    if not wanted:
        return
    names = dict(model.named_modules())
    caught: dict[str, Any] = {}
    for path in {p for p, _ in wanted.values()}:
        if path not in names:
            hint = difflib.get_close_matches(path, [n for n in names if n], n=3)
            raise IncompatibleError(f"{who} has no module '{path}'" + (f"; did you mean {', '.join(map(repr, hint))}?"
                                                                      if hint else ""))
        names[path].register_forward_hook(lambda m, a, out, path=path: caught.__setitem__(path, out))
    cl = tuple(getattr(model, "channels_last_taps", ()))
    batch: list[int] = []

    def before(m: nn.Module, args: tuple) -> None:
        caught.clear()
        batch[:] = [len(next(iter(v for v in args[0].values() if v is not None)))]

    def after(m: nn.Module, args: tuple, out: dict[str, Any]) -> dict[str, Any]:
        extra = {}
        for tap, (path, layout) in wanted.items():
            x = first_tensor(caught.get(path))
            if x is None:
                raise IncompatibleError(f"tap '{tap}': module '{path}' of {who} gave no tensor in this forward")
            extra[tap] = as_layout(x, layout, batch[0], bool(cl) and path.startswith(cl), tap)
        return {**out, **extra}

    model.register_forward_pre_hook(before)
    model.register_forward_hook(after)


def sample_shapes(factory: Any, sample: dict[str, tuple[int, ...]], options: Any = None,
                  depth: int = 3, batch: int = 2) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """A model's tap shapes and its modules' output shapes on a batch of ``sample`` inputs, built
    and run on the meta device: shapes without computing anything. The modules are those a
    forward calls, down to ``depth`` path components; at the deepest level only blocks (modules
    with children), not their single layers."""
    from xbench.specs import ModelContext

    seen: dict[str, tuple] = {}
    with torch.device("meta"):
        ctx = ModelContext(num_classes=10, shapes=dict(sample))
        model = (factory(ctx) if options is None else factory(ctx, options)).eval()
        for name, module in model.named_modules():
            if name and (name.count(".") < depth - 1 or (name.count(".") == depth - 1 and any(module.children()))):
                module.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, _shape(out)))
        inputs = {m: torch.empty((batch, *shape), dtype=torch.uint8 if m == "rgb" else torch.float32)
                  for m, shape in sample.items()}
        out = model(inputs)
    taps = {k: tuple(v.shape) for k, v in out.items() if isinstance(v, torch.Tensor)}
    return taps, {k: v for k, v in seen.items() if v is not None}


def _shape(out: Any) -> tuple | None:
    x = first_tensor(out)
    return tuple(x.shape) if x is not None else None
