"""Students and teachers from the field's libraries (torchvision, timm, transformers, PANNs'
CNN14): their taps on real clip shapes, chosen per run with --student for every method alike,
refused where a task's objective reads a tap they lack; TSM's shift; list -v's cards."""

from __future__ import annotations

import pytest
import torch

from xbench.backbones import library_models, temporal_shift
from xbench.cli import main
from xbench.specs import ModelContext
from xbench.store import ResultStore

MICRO = [f"--set=budget.{k}={v}" for k, v in (("student_steps", 2), ("teacher_steps", 2), ("eval_every", 2),
                                              ("batch_size", 4))]


def test_video_students_tap_the_last_block_at_16_frames_of_112_px():
    ctx = ModelContext(num_classes=7, shapes={"rgb": (16, 3, 112, 112)})
    clip = torch.randint(0, 256, (1, 16, 3, 112, 112), dtype=torch.uint8)
    shapes = {}
    for name, _, factory, *_ in library_models()[:4]:
        torch.manual_seed(0)
        with torch.no_grad():
            shapes[name] = {k: tuple(v.shape) for k, v in factory(ctx).eval()({"rgb": clip}).items()}
    resnet = {"logits": (1, 7), "feature": (1, 512), "tokens": (1, 2, 512), "spatial": (1, 2, 512, 7, 7)}
    assert shapes == {
        "r3d-18": resnet, "r2plus1d-18": resnet,
        # mixed convolutions: 3D in the first block only, so time is kept
        "mc3-18": {"logits": (1, 7), "feature": (1, 512), "tokens": (1, 16, 512), "spatial": (1, 16, 512, 7, 7)},
        "s3d": {"logits": (1, 7), "feature": (1, 1024), "tokens": (1, 2, 1024), "spatial": (1, 2, 1024, 3, 3)},
    }


def test_student_is_chosen_per_run_for_every_method_alike(capsys):
    base = ["run", "--task", "recognition", "--budget", "smoke", "--quiet", "--student", "r2plus1d-18", *MICRO]
    assert main([*base, "--method", "student"]) == 0 and main([*base, "--method", "kd"]) == 0
    records = sorted(ResultStore().records(), key=lambda r: r.method)
    assert [(r.method, r.config["student"], r.status) for r in records] == [
        ("kd", "r2plus1d-18", "complete"), ("student", "r2plus1d-18", "complete")]
    assert main(["run", "--method", "student", "--task", "recognition", "--budget", "smoke", "--quiet", *MICRO]) == 0
    default = [r for r in ResultStore().records() if r.config["student"] == "frame-cnn"]
    assert len(default) == 1 and default[0].config_hash != records[1].config_hash
    capsys.readouterr()
    assert main(["run", "--method", "student", "--task", "anticipation", "--student", "r2plus1d-18",
                 "--budget", "smoke"]) == 2
    assert capsys.readouterr().err == (
        "xbench: error: method 'student': loss 'caption' reads student tap 'sentence_logits', which student "
        "'r2plus1d-18' does not have (taps: logits, feature, tokens, spatial)\n")


@pytest.mark.parametrize("name", ["r3d-18", "s3d"])
def test_an_unknown_or_unfit_student_is_one_line(capsys, name):
    assert main(["run", "--method", "student", "--task", "recognition", "--student", name.upper(),
                 "--budget", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xbench: error: unknown student '{name.upper()}'") and err.count("\n") == 1


def test_every_library_model_taps_its_last_map_at_its_sample_input():
    """Shapes on the meta device (nothing computed): the taps of all 17 models at 16 frames of
    112 px (mvit-v2-s: 224 px, all it is built for), flow at 112 px, a 64 x 96 log-mel, 1 s of
    waveform."""
    from xbench.taps import sample_shapes

    got = {name: sample_shapes(factory, sample)[0] for name, _, factory, _, _, sample, _ in library_models()}

    def video(d, t, hw):
        return {"logits": (2, 10), "feature": (2, d), "tokens": (2, t, d), "spatial": (2, t, d, hw, hw)}

    def audio(d, f, t):
        return {"logits": (2, 10), "feature": (2, d), "tokens": (2, t, d), "spatial": (2, d, f, t)}

    assert got == {
        "r3d-18": video(512, 2, 7), "mc3-18": video(512, 16, 7), "r2plus1d-18": video(512, 2, 7),
        "s3d": video(1024, 2, 3), "mvit-v2-s": video(768, 8, 7), "swin3d-t": video(768, 8, 4),
        "tsn-resnet50": video(2048, 16, 4), "tsm-resnet50": video(2048, 16, 4), "tsn-resnet18": video(512, 16, 4),
        "tsn-vit-b16": video(768, 16, 7),  # 112 px in 16 px patches
        "videomae-s": video(384, 8, 7), "videomae-b": video(768, 8, 7), "flow-r2plus1d-18": video(512, 2, 7),
        # CNN14: 64 mel x 96 time halved five times; AST: 16 x 16 patches without overlap
        "cnn14": audio(2048, 2, 3), "ast": audio(768, 4, 6),
        # 1 s at 16 kHz: 49 frames of 20 ms
        "wav2vec2-base": audio(768, 1, 49), "hubert-base": audio(768, 1, 49),
    }


def test_a_model_refuses_an_input_it_cannot_read_in_one_line(capsys):
    ctx = ModelContext(num_classes=3, shapes={"rgb": (8, 3, 112, 112), "audio": (1, 16, 16)})
    factories = {name: factory for name, _, factory, *_ in library_models()}
    from xbench.errors import IncompatibleError

    with pytest.raises(IncompatibleError, match=r"^student 'mvit-v2-s' reads clips of 16 frames of 224 x 224 px "
                                                r"\(its relative-position tables are built for that size\); this "
                                                r"data gives 8 of 112 x 112$"):
        factories["mvit-v2-s"](ctx)
    with pytest.raises(IncompatibleError, match=r"^a ViT/16 reads 16 x 16 px patches; this data gives frames of "
                                                r"100 x 100$"):
        factories["tsn-vit-b16"](ModelContext(num_classes=3, shapes={"rgb": (8, 3, 100, 100)}))
    with pytest.raises(IncompatibleError, match=r"^cnn14 pools its input 2 x 2 five times: it needs at least 32 x 32 "
                                                r"mel x time cells; this data gives 16 x 16$"):
        factories["cnn14"](ctx)
    with pytest.raises(IncompatibleError, match=r"^wav2vec2-base reads waveforms; this data gives a log-mel "
                                                r"spectrogram \(1, 16, 16\): --set dataset.audio_input=waveform$"):
        factories["wav2vec2-base"](ctx)
    wave = ModelContext(num_classes=3, shapes={"audio": (8000,)})
    with pytest.raises(IncompatibleError, match=r"^cnn14 reads a log-mel spectrogram; this data gives waveforms of "
                                                r"8000 samples \(dataset.audio_input=waveform: for wav2vec2-base, "
                                                r"hubert-base\)$"):
        factories["cnn14"](wave)


def test_tsm_shifts_an_eighth_of_the_channels_each_way_in_time():
    """Lin et al. 2019: channels [0, C/8) come from the next frame, [C/8, C/4) from the previous
    one (zeros past the ends), the rest stay; a clip of 3 frames, 16 channels, 1 x 1 px."""
    x = torch.arange(3 * 16, dtype=torch.float32).view(3, 16, 1, 1)  # (B*T, C, H, W), B = 1, T = 3
    (out,) = temporal_shift(3)(None, (x,))
    v = out.view(3, 16)
    assert v[:, 0].tolist() == [16.0, 32.0, 0.0] and v[:, 1].tolist() == [17.0, 33.0, 0.0]  # from the next frame
    assert v[:, 2].tolist() == [0.0, 2.0, 18.0] and v[:, 3].tolist() == [0.0, 3.0, 19.0]  # from the previous one
    assert torch.equal(v[:, 4:], x.view(3, 16)[:, 4:])
    # the shift sits before the first convolution of each of ResNet-50's 3 + 4 + 6 + 3 blocks
    ctx = ModelContext(num_classes=3, shapes={"rgb": (4, 3, 32, 32)})
    factories = {name: factory for name, _, factory, *_ in library_models()}
    shifted = {name: sum(len(m.conv1._forward_pre_hooks) for n, m in factories[name](ctx).net.named_modules()
                         if hasattr(m, "conv1") and n.startswith("layer"))
               for name in ("tsn-resnet50", "tsm-resnet50")}
    assert shifted == {"tsn-resnet50": 0, "tsm-resnet50": 16}


def test_list_students_verbose_shows_inputs_taps_and_shapes(capsys, registry):
    from xbench.cli import _model_card

    assert _model_card(registry, "students", "r2plus1d-18").splitlines() == [
        "r2plus1d-18 (core)",
        "  torchvision's R(2+1)D-18, the factorised 3D ResNet (Tran et al. 2018), random init (31M)",
        "  reads:    rgb",
        "  taps:     logits, feature, tokens, spatial",
        "  shapes on rgb (16, 3, 112, 112), batch 2:",
        "    logits        (2, 10)",
        "    feature       (2, 512)",
        "    tokens        (2, 2, 512)",
        "    spatial       (2, 2, 512, 7, 7)",
        "  modules (tap any as module:<path>[:feature|tokens|spatial]):",
        "    net.stem      (2, 64, 16, 56, 56)",
        "    net.layer1.0  (2, 64, 16, 56, 56)",
        "    net.layer1.1  (2, 64, 16, 56, 56)",
        "    net.layer1    (2, 64, 16, 56, 56)",
        "    net.layer2.0  (2, 128, 8, 28, 28)",
        "    net.layer2.1  (2, 128, 8, 28, 28)",
        "    net.layer2    (2, 128, 8, 28, 28)",
        "    net.layer3.0  (2, 256, 4, 14, 14)",
        "    net.layer3.1  (2, 256, 4, 14, 14)",
        "    net.layer3    (2, 256, 4, 14, 14)",
        "    net.layer4.0  (2, 512, 2, 7, 7)",
        "    net.layer4.1  (2, 512, 2, 7, 7)",
        "    net.layer4    (2, 512, 2, 7, 7)",
        "    norm          (2, 512)",
        "    head          (2, 10)",
    ]
    # a model registered without a sample input shows what it reads and returns
    assert _model_card(registry, "teachers", "two-stream-tcn").splitlines()[2:] == [
        "  reads:    rgb, flow", "  taps:     logits, feature, snippets, tokens"]
    assert _model_card(registry, "teachers", "audio-cnn").splitlines()[4:8] == [
        "  shapes on audio (1, 32, 32), batch 2:", "    logits   (2, 10)", "    feature  (2, 96)",
        "    tokens   (2, 4, 96)"]
    assert main(["list", "students"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:]]
    assert names == ["ast", "cnn14", "flow-r2plus1d-18", "frame-cnn", "hubert-base", "mc3-18", "mel-cnn", "mvit-v2-s",
                     "r2plus1d-18", "r3d-18", "s3d", "snippet-tcn", "step-avt", "swin3d-t", "tsm-resnet50",
                     "tsn-resnet18", "tsn-resnet50", "tsn-vit-b16", "videomae-b", "videomae-s", "wav2vec2-base"]


def test_videomae_and_ast_forward_as_the_library_does_and_read_other_lengths():
    """Their embeddings are rebuilt so a shorter view (XKD's local crops) can be read: at the built
    size the tokens equal the library model's own forward; a quarter of the frames or of the
    spectrogram's time axis gives fewer time tokens."""
    factories = {name: factory for name, _, factory, *_ in library_models()}
    torch.manual_seed(0)
    ast = factories["ast"](ModelContext(num_classes=3, shapes={"audio": (1, 32, 64)})).eval()
    mel = torch.randn(2, 1, 32, 64)
    torch.manual_seed(0)
    vmae = factories["videomae-s"](ModelContext(num_classes=3, shapes={"rgb": (8, 3, 32, 32)})).eval()
    clip = torch.randint(0, 256, (2, 8, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        ours = ast({"audio": mel})["spatial"].flatten(2).transpose(1, 2)
        theirs = ast.net(input_values=mel[:, 0].transpose(1, 2)).last_hidden_state[:, 2:]
        assert torch.allclose(ours, theirs, atol=1e-5)
        assert ast({"audio": mel[..., :16]})["tokens"].shape == (2, 1, 768)
        pixels = (clip.float() / 255 - vmae.mean.view(1, 1, 3, 1, 1)) / vmae.std.view(1, 1, 3, 1, 1)
        ours = vmae({"rgb": clip})["spatial"].permute(0, 1, 3, 4, 2).reshape(2, -1, 384)
        assert torch.allclose(ours, vmae.net(pixel_values=pixels).last_hidden_state, atol=1e-5)
        assert vmae({"rgb": clip[:, :2]})["tokens"].shape == (2, 1, 384)


def test_a_speech_encoder_trains_on_the_waveform_the_dataset_gives(capsys):
    """``dataset.audio_input=waveform``: the examples carry each clip's samples and wav2vec2 trains
    on them; the default log-mel student says in one line that it cannot read them. The option
    leaves the generated files and a log-mel run's config hash as they were."""
    from xbench.data.synth import SynthOptions
    from xbench.store import ResultStore

    assert SynthOptions(audio_input="waveform").generation_key() == SynthOptions().generation_key()
    micro = [f"--set=budget.{k}={v}" for k, v in (("student_steps", 2), ("eval_every", 2), ("batch_size", 4))]
    base = ["run", "--method", "student", "--task", "audio-tagging", "--budget", "smoke", "--quiet", *micro]
    assert main([*base, "--student", "wav2vec2-base", "--set=dataset.audio_input=waveform"]) == 0
    (rec,) = ResultStore().records()
    assert rec.config["dataset_options"]["audio_input"] == "waveform" and rec.budget.stages[-1].steps == 2
    assert rec.metrics["top1"] == rec.metrics["top1"]  # a number, not NaN
    capsys.readouterr()
    assert main([*base, "--set=dataset.audio_input=waveform"]) == 2
    assert capsys.readouterr().err == ("xbench: error: mel-cnn reads a log-mel spectrogram; this data gives waveforms "
                                       "of 8000 samples (dataset.audio_input=waveform: for wav2vec2-base, hubert-base)\n")
