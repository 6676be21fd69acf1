"""The plugin API: loading, ownership, conflicts, disabling and the listing commands."""

from __future__ import annotations

import pytest

from xbench.cli import main
from xbench.errors import PluginError, RegistryError
from xbench.registry import build_registry

METHODS = """\
name                    description                                                                             plugin
----------------------  --------------------------------------------------------------------------------------  ---------
argb                    Dai et al. 2021 (reconstructed): BCE + atomic contrast + GCR + ABS                      argb
at                      Zagoruyko & Komodakis 2017 (AT): CE + 1000 x attention-map distance                     baselines
cc                      Peng et al. 2019 (CC): CE + 50 x correlation-matrix distance                            baselines
ccd                     Yang et al. 2022 (reconstructed): L_gen + lambda * cross-modal InfoNCE                  ccd
combo                   Losses combined by config: method.terms = [{loss, weight, ...}]                         baselines
coral                   Sun & Saenko 2016 (CORAL): CE + mean and covariance alignment                           baselines
cosine                  Cosine feature KD: CE + 1 - cos of a regressed student feature and the teacher's        baselines
crd                     Tian et al. 2020 (CRD): CE + 0.8 x NCE against min(16384, N - 1) memory-bank negatives  baselines
dkd                     Zhao et al. 2022 (DKD): CE + T^2 (1 TCKD + 8 NCKD), warmed up over 1/12 of training     baselines
fitnet                  Romero et al. 2015: CE + feature regression to the teacher                              baselines
kd                      Hinton et al. 2015: CE + T^2 KL of softened logits                                      baselines
kd-confident            Control: kd only on clips the teacher is confident on (a simple noise filter)           baselines
kd-oracle               Control (oracle): kd only on clips whose audio carries the action (privileged)          baselines
lmkd                    Ghosh et al. 2023: LM teacher's next-action logits -> video student (T=10, w=150/106)   lmkd
mmd                     Gretton et al. 2012 / Long et al. 2015 (MMD): CE + multi-kernel MMD alignment           baselines
mnf-csc                 Xia et al. 2023: CE + audio noise filter + contrastive semantic calibration             mnf-csc
noise-floor             Control: student with another dropout stream (what chance makes)                        baselines
nst                     Huang & Wang 2017 (NST): CE + 50 x MMD of neuron selectivity patterns                   baselines
pkt                     Passalis & Tefas 2018 (PKT): CE + 30000 x KL of similarity distributions                baselines
rkd                     Park et al. 2019 (RKD): CE + 25 distance + 50 angle relations                           baselines
sp                      Tung & Mori 2019 (SP): CE + 3000 x batch-similarity distance                            baselines
student                 The task's student on labels alone (no KD)                                              baselines
student+teacher-labels  Control: student on the train and teacher splits' labels (the extra data alone)         baselines
teacher                 The task's privileged-modality teacher alone (the ceiling)                              baselines
vid                     Ahn et al. 2019 (VID): CE + NLL of the teacher feature under a learned Gaussian         baselines
xkd                     Sarkar & Etemad 2024: self-supervised MAE + cross-modal EMA-teacher KD + MMD            xkd
xkd-mae                 XKD's baseline: masked reconstruction alone (L_ae), same students, steps and protocol   xkd
"""


def test_list_methods_output(capsys):
    assert main(["list", "methods"]) == 0
    assert capsys.readouterr().out == METHODS


def test_registry_names_and_owners(registry):
    assert {k: registry.names(k) for k in registry.entries} == {
        # the library models (xbench.backbones) are both students and teachers
        "teachers": ["ast", "audio-cnn", "cnn14", "flow-pose-tcn", "flow-r2plus1d-18", "flow-tcn", "hubert-base", "lm",
                     "mc3-18", "minilm", "mvit-v2-s", "pose-tcn", "r2plus1d-18", "r3d-18", "rgb-tcn", "s3d", "swin3d-t",
                     "tiny-bert", "tsm-resnet50", "tsn-resnet18", "tsn-resnet50", "tsn-vit-b16", "two-stream-tcn",
                     "video-cnn", "videomae-b", "videomae-s", "wav2vec2-base"],
        "students": ["ast", "cnn14", "flow-r2plus1d-18", "frame-cnn", "hubert-base", "mc3-18", "mel-cnn", "mvit-v2-s",
                     "r2plus1d-18", "r3d-18", "s3d", "snippet-tcn", "step-avt", "swin3d-t", "tsm-resnet50",
                     "tsn-resnet18", "tsn-resnet50", "tsn-vit-b16", "videomae-b", "videomae-s", "wav2vec2-base"],
        "losses": ["argb-abs", "argb-atomic", "argb-gcr", "at", "bce", "caption", "cc", "ccd-infonce", "ce",
                   "coral", "cosine", "crd", "dkd", "fitnet", "kd", "kd-gated", "kd-oracle", "lmkd-kl", "mmd", "mse",
                   "nst", "pkt", "rkd", "sp", "vid"],
        "datasets": ["charades", "egtea-gaze", "epic-kitchens-55", "folder", "hmdb51", "kinetics-400", "kinetics-sound",
                     "list", "synth", "tasty", "toyota-smarthome", "ucf101", "ucf51"],
        "tasks": ["anticipation", "audio-tagging", "detection", "recognition", "retrieval"],
        "methods": ["argb", "at", "cc", "ccd", "combo", "coral", "cosine", "crd", "dkd", "fitnet", "kd",
                    "kd-confident", "kd-oracle", "lmkd", "mmd", "mnf-csc", "noise-floor", "nst", "pkt", "rkd", "sp", "student",
                    "student+teacher-labels", "teacher", "vid", "xkd", "xkd-mae"],
    }
    library = ["ast", "cnn14", "flow-r2plus1d-18", "hubert-base", "mc3-18", "mvit-v2-s", "r2plus1d-18", "r3d-18", "s3d",
               "swin3d-t", "tsm-resnet50", "tsn-resnet18", "tsn-resnet50", "tsn-vit-b16", "videomae-b", "videomae-s",
               "wav2vec2-base"]
    assert registry.registered_by("core") == {
        "teachers": sorted(["audio-cnn", "flow-pose-tcn", "flow-tcn", "pose-tcn", "rgb-tcn", "two-stream-tcn",
                            "video-cnn", *library]),
        "students": sorted(["frame-cnn", "mel-cnn", "snippet-tcn", "step-avt", *library]),
        "losses": ["bce", "caption", "ce", "mse"],
        "datasets": ["charades", "egtea-gaze", "epic-kitchens-55", "folder", "hmdb51", "kinetics-400", "kinetics-sound",
                     "list", "synth", "tasty", "toyota-smarthome", "ucf101", "ucf51"],
        "tasks": ["anticipation", "audio-tagging", "detection", "recognition", "retrieval"],
    }
    assert registry.registered_by("argb") == {"losses": ["argb-abs", "argb-atomic", "argb-gcr"],
                                              "methods": ["argb"]}
    assert registry.registered_by("xkd") == {"methods": ["xkd", "xkd-mae"]}
    assert registry.registered_by("mnf-csc") == {"methods": ["mnf-csc"]}
    assert registry.registered_by("text") == {"teachers": ["lm", "minilm", "tiny-bert"]}
    assert registry.owner("methods", "kd").dist == "xbench-baselines"


def test_plugins_command_lists_each_plugin(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["plugin", "distribution", "version", "registers"]
    assert [line.split()[:3] for line in out[2:]] == [
        ["argb", "xbench-argb", "0.1.0"], ["baselines", "xbench-baselines", "0.1.0"],
        ["ccd", "xbench-ccd", "0.1.0"], ["core", "xbench", "0.1.0"], ["lmkd", "xbench-lmkd", "0.1.0"],
        ["mnf-csc", "xbench-mnf-csc", "0.1.0"], ["text", "xbench-text", "0.1.0"],
        ["xkd", "xbench-xkd", "0.1.0"]]
    assert out[2].split(None, 3)[3] == "losses: argb-abs, argb-atomic, argb-gcr; methods: argb"
    assert out[3].split(None, 3)[3] == (
        "losses: at, cc, coral, cosine, crd, dkd, fitnet, kd, kd-gated, kd-oracle, mmd, nst, pkt, rkd, sp, vid; "
        "methods: at, cc, combo, coral, cosine, crd, dkd, fitnet, kd, kd-confident, kd-oracle, mmd, noise-floor, nst, pkt, rkd, sp, student, "
        "student+teacher-labels, teacher, vid")
    assert out[4].split(None, 3)[3] == "losses: ccd-infonce; methods: ccd"


def test_unknown_name_did_you_mean(registry):
    with pytest.raises(RegistryError, match=r"^unknown method 'kdd'; did you mean 'kd'\?$"):
        registry.get("methods", "kdd")
    with pytest.raises(RegistryError, match=r"^unknown loss 'zzz'; known: argb-abs, argb-atomic, argb-gcr, "
                                            r"at, bce, caption, cc, ccd-infonce, ce, coral, cosine, crd, dkd, fitnet, kd, "
                                            r"kd-gated, kd-oracle, lmkd-kl, mmd, mse, nst, pkt, rkd, sp, vid$"):
        registry.get("losses", "zzz")


def test_duplicate_name_names_both_plugins(add_plugin):
    add_plugin("dupkd", """
        from xbench import hookimpl
        from xbench.specs import LossTerm, MethodSpec

        @hookimpl
        def xbench_register_methods(register):
            register(MethodSpec(name="kd", description="mine", terms=lambda o: [LossTerm("ce", target="label")]))
    """)
    with pytest.raises(RegistryError) as err:
        build_registry()
    assert str(err.value) == "method 'kd' is registered by both plugin 'baselines' and plugin 'dupkd'"


def test_plugin_that_fails_to_import_is_named(add_plugin, capsys):
    add_plugin("brokenimport", "import no_such_module_xyz\n")
    assert main(["list", "methods"]) == 2
    err = capsys.readouterr().err
    assert err == ("xbench: error: plugin 'brokenimport' (brokenimport) failed to import brokenimport: "
                   "ModuleNotFoundError: No module named 'no_such_module_xyz'\n")


def test_plugin_raising_in_hook_is_named(add_plugin):
    add_plugin("raiser", """
        from xbench import hookimpl

        @hookimpl
        def xbench_register_losses(register):
            raise RuntimeError("boom")
    """)
    with pytest.raises(PluginError, match=r"^plugin 'raiser' raised in xbench_register_losses: RuntimeError: boom$"):
        build_registry()


def test_misspelled_hook_fails_at_once(add_plugin):
    add_plugin("typo", """
        from xbench import hookimpl

        @hookimpl
        def xbench_register_method(register):
            pass
    """)
    with pytest.raises(PluginError, match=r"^plugin 'typo' implements an unknown hook 'xbench_register_method'; did you mean 'xbench_register_methods'\?$"):
        build_registry()


def test_wrong_spec_type_is_named(add_plugin):
    add_plugin("wrongtype", """
        from xbench import hookimpl
        from xbench.specs import LossSpec

        @hookimpl
        def xbench_register_methods(register):
            register(LossSpec(name="x", description="", factory=None))
    """)
    with pytest.raises(PluginError, match=r"^plugin 'wrongtype' registered a LossSpec through "
                                          r"xbench_register_methods; expected MethodSpec$"):
        build_registry()


def test_disable_plugins(monkeypatch, add_plugin):
    add_plugin("brokenimport", "import no_such_module_xyz\n")
    monkeypatch.setenv("XBENCH_DISABLE_PLUGINS", "brokenimport, baselines,ccd,lmkd,text,xkd,mnf-csc,argb")
    reg = build_registry()
    assert sorted(reg.plugins) == ["core"]
    assert reg.names("methods") == []
