"""Local checkpoints for students and teachers (``--set student.checkpoint=PATH``,
``--set teacher.checkpoint=PATH``): weights read from a file on this machine, never a URL.

A checkpoint is a safetensors file or a torch file (read with ``weights_only=True``: a pickle that
would run code is refused). Its weights may sit under ``state_dict``/``model``/``module`` (the
usual wrappers) and carry DistributedDataParallel's ``module.`` prefix. They load into the model,
or into the submodule a model names in ``checkpoint_roots`` (a torchvision network's own names
inside xbench's wrapper), whichever shares more keys with the file. Keys the model has and the
file lacks (a new classification head) and keys the file has and the model lacks (the
checkpoint's own head) are listed in the log and the run's record; a key whose shape differs is
an error naming the key. The file's SHA-256 enters the run's config hash and the teacher-cache
key, so another file is another configuration."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xbench.data.io import sha256_file
from xbench.errors import ConfigError, DataError

#: wrappers a training script commonly puts its weights under
WRAPPERS = ("state_dict", "model", "module", "model_state", "model_state_dict")
#: how many missing / unexpected key names a record keeps (and the log shows) of each
LISTED = 50


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file and the SHA-256 of its bytes."""

    path: str
    sha256: str


@dataclass(frozen=True)
class ModelSetup:
    """The harness's options of a student or teacher, beside those its spec declares: a local
    ``checkpoint`` to start from; for a teacher, ``train_steps``, the steps it trains here (at
    most the tier's; 0: a pretrained teacher used as it is); and how the model executes:
    ``compile`` (``torch.compile``'s mode: its kernels change the numerics in the last bits, so a
    compiled run is another configuration) and ``activation_checkpointing`` (activations
    recomputed in the backward pass instead of kept: less memory, more time). For a student,
    ``encoder`` (frozen-feature mode: the registered student whose ``feature`` tap encodes each
    clip once, frozen, in place of the clip's frames; ``xbench.engine.features``) and
    ``encoder_checkpoint``, the local file it starts from, and ``encoder_trainable`` (the student
    trains the encoder as its clip encoder instead of reading its frozen features)."""

    checkpoint: Checkpoint | None = None
    train_steps: int | None = None
    compile: str | None = None
    activation_checkpointing: bool = False
    encoder: str | None = None
    encoder_checkpoint: Checkpoint | None = None
    encoder_trainable: bool = False

    def plain(self) -> dict[str, Any]:
        """What the config hash and the teacher-cache key hold (the file's hash, not its path)."""
        return {**({"checkpoint": self.checkpoint.sha256} if self.checkpoint else {}),
                **({"train_steps": self.train_steps} if self.train_steps is not None else {}),
                **({"compile": self.compile} if self.compile else {}),
                **({"activation_checkpointing": True} if self.activation_checkpointing else {}),
                **({"encoder": self.encoder} if self.encoder else {}),
                **({"encoder_checkpoint": self.encoder_checkpoint.sha256} if self.encoder_checkpoint else {}),
                **({"encoder_trainable": True} if self.encoder_trainable else {})}


#: the harness's keys in ``--set student.KEY`` / ``--set teacher.KEY`` (the rest are the spec's)
SETUP_KEYS = {"student": ("checkpoint", "compile", "activation_checkpointing", "encoder", "encoder_checkpoint",
                          "encoder_trainable"),
              "teacher": ("checkpoint", "train_steps", "compile", "activation_checkpointing")}
#: ``torch.compile``'s modes (``compile=true``: its default)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def model_setup(who: str, options: dict[str, Any], max_steps: int) -> tuple[ModelSetup, dict[str, Any]]:
    """``options`` split into the harness's setup of ``who`` (student or teacher) and the rest."""
    rest = {k: v for k, v in options.items() if k not in SETUP_KEYS[who]}
    ckpt = checkpoint_of(options["checkpoint"], who) if options.get("checkpoint") is not None else None
    steps = options.get("train_steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= max_steps):
        raise ConfigError(f"teacher.train_steps: expected an integer from 0 to the tier's teacher_steps "
                          f"({max_steps}), got {steps!r}")
    mode = options.get("compile", False)
    if mode is True:
        mode = "default"
    if mode not in (False, None) and mode not in COMPILE_MODES:
        raise ConfigError(f"{who}.compile: expected true, false or one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    ac = options.get("activation_checkpointing", False)
    if not isinstance(ac, bool):
        raise ConfigError(f"{who}.activation_checkpointing: expected true or false, got {ac!r}")
    encoder = options.get("encoder")
    if encoder is not None and (not isinstance(encoder, str) or not encoder):
        raise ConfigError(f"{who}.encoder: expected a student's name, got {encoder!r}")
    enc_ckpt = options.get("encoder_checkpoint")
    if enc_ckpt is not None and encoder is None:
        raise ConfigError(f"{who}.encoder_checkpoint: give {who}.encoder=NAME too (the network it initialises)")
    enc = checkpoint_of(enc_ckpt, f"{who}.encoder_checkpoint") if enc_ckpt is not None else None
    trainable = options.get("encoder_trainable", False)
    if not isinstance(trainable, bool):
        raise ConfigError(f"{who}.encoder_trainable: expected true or false, got {trainable!r}")
    if trainable and encoder is None:
        raise ConfigError(f"{who}.encoder_trainable: give {who}.encoder=NAME too (the network it trains)")
    return ModelSetup(ckpt, steps, mode or None, ac, encoder, enc, trainable), rest


def option(who: str) -> str:
    """The option a message names: ``student.checkpoint`` for ``student``, or ``who`` itself where
    it is an option already (``student.encoder_checkpoint``)."""
    return who if "." in who else f"{who}.checkpoint"


def untrained_teacher(setup: ModelSetup, steps: int, tier: str, teacher: str) -> str | None:
    """Why a teacher that no stage trains (``steps`` 0) and no file initialises cannot be used
    (it would distil random outputs), or None."""
    if steps or setup.checkpoint is not None:
        return None
    if setup.train_steps == 0:
        return ("teacher.train_steps=0 keeps a randomly initialised teacher: give teacher.checkpoint=PATH "
                "(a pretrained teacher) or more steps")
    return (f"budget tier '{tier}' trains teacher '{teacher}' for 0 steps: give --set teacher.checkpoint=PATH "
            "(a pretrained teacher), or a tier with teacher_steps > 0")


_memo: dict[tuple[str, int, int], str] = {}


def checkpoint_of(path: Any, who: str) -> Checkpoint:
    """The checkpoint at ``path`` (its hash computed once per file state in a process)."""
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{option(who)}: expected a file path, got {path!r}")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{option(who)}: no file {file}")
    # a sweep plans every run of its grid: a large file is hashed once per state (size, mtime)
    st, where = file.stat(), str(file.resolve())
    key = (where, st.st_size, st.st_mtime_ns)
    if key not in _memo:
        _memo[key] = sha256_file(file)
    return Checkpoint(where, _memo[key])


def read_weights(path: str, who: str) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint file holds, unwrapped (see the module's docstring)."""
    try:
        if _is_safetensors(path):
            from safetensors.torch import load_file

            raw: Any = load_file(path, device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file or a pickle weights_only refuses: one line, naming it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(f"{option(who)} {path}: not a readable safetensors or torch file "
                        f"({type(exc).__name__}: {first})") from exc
    while isinstance(raw, dict) and not _all_tensors(raw):
        inner = next((raw[k] for k in WRAPPERS if isinstance(raw.get(k), dict)), None)
        if inner is None:
            break
        raw = inner
    if not isinstance(raw, dict) or not raw or not _all_tensors(raw):
        raise DataError(f"{option(who)} {path}: expected a mapping of parameter name -> tensor "
                        f"(optionally under one of {', '.join(WRAPPERS)})")
    if all(k.startswith("module.") for k in raw):  # saved from DistributedDataParallel
        raw = {k[len("module."):]: v for k, v in raw.items()}
    return raw


def _is_safetensors(path: str) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(path)


def _all_tensors(d: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def load_checkpoint(model: nn.Module, ckpt: Checkpoint, who: str,
                    weights: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Load ``ckpt`` into ``model`` (or its best-matching ``checkpoint_roots`` submodule); returns
    what the record keeps: path, hash, where it loaded, and the missing and unexpected keys.
    ``weights``: the file's tensors where the caller has read them already (one read for the K
    teachers of "crossfit:K")."""
    weights = read_weights(ckpt.path, who) if weights is None else weights
    states = {r: _module(model, r).state_dict() for r in ("", *getattr(model, "checkpoint_roots", ()))}
    target_name = max(states, key=lambda r: len(weights.keys() & states[r].keys()))
    own = states[target_name]
    shared = weights.keys() & own.keys()
    if not shared:
        raise ConfigError(f"{option(who)} {ckpt.path}: none of its {len(weights)} keys is a parameter of "
                          f"{who.removesuffix('_checkpoint')} (its first: '{next(iter(weights))}'; the model's: '{next(iter(own), '')}')")
    for key in shared:
        if weights[key].shape != own[key].shape:
            prefix = f"{target_name}." if target_name else ""
            raise ConfigError(f"{option(who)} {ckpt.path}: '{prefix}{key}' has shape {tuple(weights[key].shape)} "
                              f"in the file and {tuple(own[key].shape)} in the model")
    result = _module(model, target_name).load_state_dict(weights, strict=False)
    return {"path": ckpt.path, "sha256": ckpt.sha256, "into": target_name or "(the model)", "loaded": len(shared),
            "missing": sorted(result.missing_keys)[:LISTED], "missing_count": len(result.missing_keys),
            "unexpected": sorted(result.unexpected_keys)[:LISTED], "unexpected_count": len(result.unexpected_keys)}


def _module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name) if name else model


def describe(info: dict[str, Any]) -> str:
    """One log line of a loaded checkpoint."""
    def keys(kind: str) -> str:
        names, n = info[kind], info[f"{kind}_count"]
        return f"{n} {kind}" + (f" ({', '.join(names[:8])}{', ...' if n > 8 else ''})" if n else "")

    return (f"checkpoint {info['path']} (sha256 {info['sha256'][:12]}) into {info['into']}: "
            f"{info['loaded']} tensors loaded, {keys('missing')}, {keys('unexpected')}")
