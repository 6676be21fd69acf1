"""Temporal action detection: the synthetic overlaps, the task's examples and metrics, and the
loss terms of frame-level KD and argb (golden values against hand computations)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from xbench_argb import ABSOptions, AtomicContrast, AtomicOptions, BoundarySaliency, relation_loss
from xbench_baselines import KDLoss, KDLossOptions

from xbench.builtin import FrameBCE
from xbench.data.synth import SynthDataset, SynthOptions
from xbench.tasks import DetectionOptions, DetectionTask, event_map, frame_map
from xbench.testing import seeded_randn as randn


def test_frame_map_by_hand():
    # one video of 4 real frames + 1 padding frame, 2 classes
    labels = np.array([[[1, 0], [1, 1], [0, 1], [0, 0], [-1, -1]]], dtype=np.float32)
    scores = np.array([[[0.9, 0.1], [0.4, 0.8], [0.6, 0.7], [0.1, 0.2], [1.0, 1.0]]])
    # class 0: ranking 0.9(+) 0.6(-) 0.4(+) 0.1(-): AP = (1/1 + 2/3) / 2
    # class 1: ranking 0.8(+) 0.7(+) 0.2(-) 0.1(-): AP = 1; the padding frame is never scored
    assert frame_map(scores, labels) == pytest.approx(100 * ((1 + 2 / 3) / 2 + 1) / 2)


def test_event_map_by_hand():
    labels = np.zeros((2, 10, 1), dtype=np.float32)
    labels[0, 2:6, 0] = 1  # video 0: one event [2, 6)
    labels[1, 1:3, 0] = labels[1, 6:9, 0] = 1  # video 1: events [1, 3) and [6, 9)
    labels[1, 9] = -1  # padding
    scores = np.zeros((2, 10, 1))
    scores[0, 3:6, 0] = 0.9  # [3, 6): IoU 3/4 with [2, 6), score 0.9
    scores[1, 0:2, 0] = 0.6  # [0, 2): IoU 1/3 with [1, 3), score 0.6
    scores[1, 6:8, 0] = 0.8  # [6, 8): IoU 2/3 with [6, 9), score 0.8
    scores[1, 9, 0] = 1.0    # padding: no event
    # ranked 0.9 (hit), 0.8 (hit), 0.6 (hit at 0.1 and 0.3, miss at 0.5); 3 true events
    assert event_map(scores, labels, 0.1, 0.5) == pytest.approx(100.0)
    assert event_map(scores, labels, 0.3, 0.5) == pytest.approx(100.0)
    assert event_map(scores, labels, 0.5, 0.5) == pytest.approx(100 * 2 / 3)
    assert event_map(scores, labels, 0.7, 0.5) == pytest.approx(100 * 1 / 3)


def test_synth_overlaps_give_multilabel_frames(tmp_path):
    plain = SynthOptions(size="tiny")
    assert plain.generation_key() == "tiny-f36738ebb46a1756"  # unchanged by the new option
    ds = SynthDataset(SynthOptions(size="tiny", overlap_rate=0.5), tmp_path, log=lambda m: None)
    videos = ds.videos("train")
    overlaps = [o for v in videos for o in v.overlaps]
    assert overlaps and all(o.start >= 0 and o.end <= v.num_frames for v in videos for o in v.overlaps)
    task = DetectionTask(DetectionOptions())
    ex = task.examples(ds, "train", ("rgb", "flow", "pose"))
    length = ex.tensors["frame_labels"].shape[1]
    assert length % 4 == 0 and length >= max(v.num_frames for v in videos)
    assert ex.tensors["rgb"].shape == (len(videos), length // 4, 2, 3, 32, 32)
    assert ex.tensors["flow"].shape == (len(videos), length // 4, 2, 2, 16, 16)
    assert ex.tensors["pose"].shape == (len(videos), length // 4, 2, 5, 3)
    y = ex.tensors["frame_labels"]
    assert int((y.clamp(min=0).sum(-1) >= 2).sum()) > 0  # frames with two actions
    assert int((y[0, :, 0] == -1).sum()) == length - videos[0].num_frames  # padding marked


def test_frame_bce_golden():
    logits = randn(1, 2, 2, seed=1)
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, -1.0]]])
    value = float(FrameBCE()(logits, target))
    total = 0.0
    for f in range(3):  # frames 0, 1 -> snippet 0; frame 2 -> snippet 1; frame 3 is padding
        for c in range(2):
            z, y = logits[0, f // 2, c].item(), target[0, f, c].item()
            p = 1 / (1 + math.exp(-z))
            total -= y * math.log(p) + (1 - y) * math.log(1 - p)
    assert value == pytest.approx(total / 6, rel=1e-5)
    assert value == pytest.approx(0.6650881, rel=1e-5)


def test_losses_over_time_steps_leave_padding_out():
    """With positions, every time-step loss equals its value on the real snippets alone: the
    per-position ones on the real rows, the sequence-level ones on each sequence cut to its length
    (GCR: each real snippet's relations summed, mean over real snippets; ABS: mean over sequences)."""
    from xbench_baselines import FitNetLoss

    s, t = randn(2, 5, 4, seed=8), randn(2, 5, 4, seed=9)
    positions = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    rows = (torch.cat([s[0], s[1, :3]]), torch.cat([t[0], t[1, :3]]))

    kd = KDLoss(KDLossOptions(T=2.0, multilabel=True))
    assert float(kd(s, t, positions)) == pytest.approx(float(kd(*rows)), rel=1e-6)
    torch.manual_seed(0)
    fit = FitNetLoss({"student": 4, "teacher": 4})
    atomic = AtomicContrast(AtomicOptions(), {"student": 4, "teacher": 4})
    with torch.no_grad():
        assert float(fit(s, t, positions)) == pytest.approx(float(fit(*rows)), rel=1e-6)
        assert float(atomic(s, t, positions)) == pytest.approx(float(atomic(rows[0][None], rows[1][None])), rel=1e-6)

    cut = [(s[0:1], t[0:1]), (s[1:2, :3], t[1:2, :3])]
    # each cut sequence's loss is its relation sum over its own snippets: 5 and 3 real snippets
    row_sums = [relation_loss(a, b) * a.shape[1] for a, b in cut]
    assert float(relation_loss(s, t, positions)) == pytest.approx(float(sum(row_sums) / (5 + 3)), rel=1e-6)
    for match in ("kl", "mse"):
        abs_loss = BoundarySaliency(ABSOptions(match=match))
        per_seq = [float(abs_loss(a, b)) for a, b in cut]
        assert float(abs_loss(s, t, positions)) == pytest.approx(sum(per_seq) / 2, rel=1e-5)
    # no positions: every step is real, the values of the goldens above
    assert float(relation_loss(s, t, torch.ones(2, 5, dtype=torch.bool))) == pytest.approx(float(relation_loss(s, t)))


def test_detection_examples_mark_real_snippets(data_root):
    ds = SynthDataset(SynthOptions(size="tiny", overlap_rate=0.3), data_root, log=lambda m: None)
    task = DetectionTask(DetectionOptions())
    ex = task.examples(ds, "val", ("pose",))
    lengths = [v.num_frames for v in ds.videos("val")]
    assert ex.tensors["positions"].sum(1).tolist() == [-(-n // 4) for n in lengths]
    assert not ex.tensors["positions"].all()  # the shorter sequences are padded


def test_pose_streams_positions_bones_and_motion():
    from xbench.models import _pose_streams

    # one snippet of 2 frames, 2 joints: the actor moves by (1, 2) and its second joint hides
    x = torch.tensor([[[[[1.0, 1.0, 1.0], [3.0, 1.0, 1.0]],
                        [[2.0, 3.0, 1.0], [0.0, 0.0, 0.0]]]]])  # (B=1, S=1, K=2, P=2, 3)
    f = _pose_streams(x)[0, 0].tolist()
    assert f[:12] == x.flatten().tolist()
    assert f[12:20] == [0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # bones: joint - root, hidden = 0
    assert f[20:] == [1.0, 2.0, 0.0, 0.0]  # motion of the root; the hidden joint has none
    # where the actor stands changes the positions only
    moved = x.clone()
    moved[..., :2] += 5 * x[..., 2:3]
    assert _pose_streams(moved)[0, 0, 12:].tolist() == f[12:]
