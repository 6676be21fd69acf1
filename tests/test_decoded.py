"""The decode-once cache: the same batches as decoding, a new cache for a new key, corrupt entries
named and rebuilt, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xbench.cli import main
from xbench.data import decoded
from xbench.data.synth import SynthDataset, SynthOptions


@pytest.fixture
def ds(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("XBENCH_DATA", str(data_root))
    return SynthDataset(SynthOptions(size="tiny"), data_root, log=lambda m: None)


def _examples(registry, ds):
    t = registry.get("tasks", "recognition")
    return t.factory(t.options()).examples(ds, "val", ("rgb",)).tensors["rgb"]


def test_batches_are_identical_with_and_without_the_cache(registry, ds, monkeypatch):
    decoded.clear(ds.root.parent.parent)
    monkeypatch.setenv("XBENCH_DECODE_CACHE", "0")
    plain = _examples(registry, ds)
    monkeypatch.setenv("XBENCH_DECODE_CACHE", "1")
    first = _examples(registry, SynthDataset(SynthOptions(size="tiny"), ds.root.parent.parent, log=lambda m: None))
    again = _examples(registry, SynthDataset(SynthOptions(size="tiny"), ds.root.parent.parent, log=lambda m: None))
    assert torch.equal(plain, first) and torch.equal(plain, again)
    [cache] = decoded.info(ds.root.parent.parent)
    assert cache["entries"] == len(ds.videos("val"))
    assert cache["params"] == {"manifest": ds.manifest_hash(), **decoded.decode_params()}


def test_any_change_of_key_builds_a_new_cache(tmp_path):
    frames = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    calls = []

    def decode():
        calls.append(1)
        return frames

    a = decoded.DecodeCache(tmp_path, "manifest-a")
    assert np.array_equal(a.frames("v", decode), frames) and np.array_equal(a.frames("v", decode), frames)
    assert len(calls) == 1  # the second read is mapped from the cache
    b = decoded.DecodeCache(tmp_path, "manifest-b")  # regenerated data
    c = decoded.DecodeCache(tmp_path, "manifest-a", {**decoded.decode_params(), "size": 112})  # other decoding
    b.frames("v", decode)
    c.frames("v", decode)
    assert len(calls) == 3 and len({a.dir, b.dir, c.dir}) == 3
    assert sorted(x["params"]["manifest"] for x in decoded.info(tmp_path)) == ["manifest-a", "manifest-a", "manifest-b"]


@pytest.mark.parametrize("damage, problem", [
    (lambda data, head: data.write_bytes(data.read_bytes()[:-10]), "86 bytes, header says 96"),
    (lambda data, head: data.write_bytes(b"\x07" + data.read_bytes()[1:]), "checksum mismatch"),
    (lambda data, head: head.write_text("{"), "unreadable header"),
])
def test_a_corrupt_entry_is_named_and_rebuilt(tmp_path, damage, problem):
    frames = np.arange(96, dtype=np.uint8).reshape(2, 4, 4, 3)
    messages = []
    cache = decoded.DecodeCache(tmp_path, "m", log=messages.append)
    cache.frames("v", lambda: frames)
    data, head = cache.dir / "v.u8", cache.dir / "v.json"
    damage(data, head)
    assert np.array_equal(cache.frames("v", lambda: frames), frames)
    assert len(messages) == 1 and messages[0].startswith(f"decode cache: corrupt entry {data} ({problem}")
    assert messages[0].endswith("; decoding again")
    assert json.loads(head.read_text())["shape"] == [2, 4, 4, 3]
    assert np.array_equal(cache.frames("v", lambda: None), frames)  # rebuilt: read from the cache again


def test_cli_shows_and_clears_the_caches(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XBENCH_DATA", str(tmp_path))
    assert main(["data", "cache", "--info"]) == 0
    assert capsys.readouterr().out == f"no decode cache in {tmp_path / 'decoded'}\n"
    cache = decoded.DecodeCache(tmp_path, "m1")
    cache.frames("v", lambda: np.zeros((2, 32, 32, 3), np.uint8))
    assert main(["data", "cache", "--info"]) == 0
    assert capsys.readouterr().out == (f"{cache.key}: 1 videos, 0.0 MiB, manifest m1, decord "
                                       f"{decoded.decode_params()['version']}, frames all, size native ({cache.dir})\n")
    assert main(["data", "cache", "--clear"]) == 0
    assert capsys.readouterr().out == f"removed 1 decode caches from {tmp_path / 'decoded'}\n"
    assert decoded.info(tmp_path) == []
