"""Students and teachers from the field's libraries, built randomly initialised (nothing is
downloaded: weights come from a local checkpoint, ``--set student.checkpoint=PATH``, never a URL).

Video models take the clip's uint8 frames (B, T, 3, H, W) (or its optical flow (B, T, 2, H, W)),
normalise them with the statistics their published weights were trained with, and return the
taps the generic losses read: ``logits``; ``feature`` (B, D) the pooled embedding; ``tokens``
(B, T', D) the last feature map averaged over space, one token per remaining time step;
``spatial`` (B, T', D, h, w) that map. The library network sits under ``net`` with its own
parameter names, so the library's checkpoints load into it (their classifier is listed as
unexpected: the head is the task's).

- torchvision (Tran et al. 2018; Xie et al. 2018; Li et al. 2022; Liu et al. 2022): at 16 frames
  of 112 px ``r3d-18`` and ``r2plus1d-18`` halve time three times and space four (2 tokens of
  512 channels on 7 x 7); ``mc3-18`` keeps time (16 tokens); ``s3d`` halves time three times and
  space five (2 tokens of 1024 on 3 x 3); ``mvit-v2-s`` reads 16 frames of 224 px only (its
  relative-position tables are built for that size; 8 tokens of 768 on 7 x 7); ``swin3d-t``
  halves time once and space five times (8 tokens of 768).
- timm 2D backbones, one image per frame: TSN (Wang et al. 2016: frame features averaged over
  time) and TSM (Lin et al. 2019: the same, with 1/8 of the channels shifted one frame forward and
  1/8 back before each residual block's first convolution).
- transformers ``VideoMAE`` (Tong et al. 2022), the ViT that XKD distils into: tubelets of 2
  frames x 16 x 16 px, ViT-S (384 wide, 12 layers) or ViT-B (768); tokens pooled by their mean
  and a LayerNorm, as its classifier does.

Audio models read the clip's log-mel spectrogram (B, 1, mel, time), the harness's audio input:
``cnn14`` (Kong et al. 2020, PANNs, the AudioSet CNN MNF+CSC's teacher uses), written against
its published layer table with PANNs' parameter names (so its AudioSet checkpoint loads, its
spectrogram front end listed as unexpected; it was trained on 64 mel bands: ``dataset.mel_bands=64``),
and transformers' ``AST`` (Gong et al. 2021) with 16 x 16 patches cut without overlap (the paper
overlaps them at a stride of 10). Their ``tokens`` run along time (mel bands averaged), ``spatial``
is the last map (B, D, mel cells, time cells). The speech encoders read the waveform itself
(B, S), where the dataset gives it (``--set dataset.audio_input=waveform``): transformers'
``wav2vec2-base`` (Baevski et al. 2020) and ``hubert-base`` (Hsu et al. 2021), the architectures
of torchaudio's WAV2VEC2_BASE and HUBERT_BASE bundles (their checkpoints load through the
transformers names); ``tokens`` are their 20 ms frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xbench.errors import IncompatibleError
from xbench.models import needs_log_mel
from xbench.specs import ModelContext

#: the normalisation torchvision's Kinetics-400 video weights expect (their transforms' mean, std)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
#: ImageNet's, which timm's and VideoMAE's weights expect
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: (B, C, T, H, W) normalised clip -> (B, D, T', h, w) last feature map, given the library network
Features = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class VideoBackbone(nn.Module):
    """A library video network as a student or teacher: ``features(net, x)`` maps the normalised
    clip (B, C, T, H, W) to its last feature map (B, D, T', h, w); a linear head (after a
    LayerNorm for transformers) over the pooled map gives the logits."""

    checkpoint_roots = ("net",)

    def __init__(self, ctx: ModelContext, net: nn.Module, dim: int, features: Features, *,
                 modality: str = "rgb", stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                 norm: bool = False) -> None:
        super().__init__()
        self.net, self.dim, self.modality, self._features = net, dim, modality, features
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.head = nn.Linear(dim, ctx.num_classes)
        mean, std = stats or (KINETICS_MEAN, KINETICS_STD)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1, 1), persistent=False)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs[self.modality].movedim(2, 1)  # (B, T, C, H, W) -> (B, C, T, H, W)
        if self.modality == "rgb":
            x = (x.float().div(255.0) - self.mean) / self.std
        else:  # flow: pixels of displacement, already centred
            x = x.float()
        spatial = self._features(self.net, x)  # (B, D, T', h, w)
        tokens = spatial.mean(dim=(3, 4)).transpose(1, 2)
        feature = self.norm(tokens.mean(dim=1))
        return {"logits": self.head(feature), "feature": feature, "tokens": tokens,
                "spatial": spatial.transpose(1, 2)}


def _rgb_shape(ctx: ModelContext) -> tuple[int, int, int, int]:
    return tuple(ctx.shapes["rgb"])  # type: ignore[return-value]


def _flow_stem(conv: nn.Conv3d) -> nn.Conv3d:
    """A first convolution like ``conv`` reading 2 flow channels instead of 3 colours."""
    return nn.Conv3d(2, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)


# ----------------------------------------------------------------------------- torchvision


def _resnet3d_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.layer4(net.layer3(net.layer2(net.layer1(net.stem(x)))))


def _resnet3d(arch: str, modality: str = "rgb") -> Callable[[ModelContext], VideoBackbone]:
    def factory(ctx: ModelContext) -> VideoBackbone:
        import torchvision.models.video as tv  # when a run builds it: registering imports nothing

        net = getattr(tv, arch)(weights=None)
        dim = net.fc.in_features
        net.fc = nn.Identity()  # the task's head replaces Kinetics' 400 classes
        if modality == "flow":
            net.stem[0] = _flow_stem(net.stem[0])
        return VideoBackbone(ctx, net, dim, _resnet3d_features, modality=modality)

    return factory


def _s3d(ctx: ModelContext) -> VideoBackbone:
    from torchvision.models.video import s3d

    net = s3d(weights=None)
    net.classifier = nn.Identity()
    return VideoBackbone(ctx, net, 1024, lambda n, x: n.features(x))


def _mvit_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # torchvision's MViT.forward up to its norm, keeping the tokens and their (T', h, w) grid
    x = net.conv_proj(x).flatten(2).transpose(1, 2)
    x = net.pos_encoding(x)
    thw = (net.pos_encoding.temporal_size, *net.pos_encoding.spatial_size)
    for block in net.blocks:
        x, thw = block(x, thw)
    x = net.norm(x)[:, 1:]  # the class token out: a map of the patches
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *thw)


def _mvit(ctx: ModelContext) -> VideoBackbone:
    from torchvision.models.video import mvit_v2_s

    t, _, h, w = _rgb_shape(ctx)
    if (t, h, w) != (16, 224, 224):  # torchvision builds mvit_v2_s for this size only
        raise IncompatibleError(f"student 'mvit-v2-s' reads clips of 16 frames of 224 x 224 px (its relative-"
                                f"position tables are built for that size); this data gives {t} of {h} x {w}")
    net = mvit_v2_s(weights=None)
    net.head = nn.Identity()
    return VideoBackbone(ctx, net, 768, _mvit_features, norm=True)


def _swin_features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    # torchvision's SwinTransformer3d.forward up to its norm: (B, T', h, w, D) -> (B, D, T', h, w)
    return net.norm(net.features(net.pos_drop(net.patch_embed(x)))).permute(0, 4, 1, 2, 3)


def _swin3d(ctx: ModelContext) -> VideoBackbone:
    from torchvision.models.video import swin3d_t

    net = swin3d_t(weights=None)
    net.head = nn.Identity()
    model = VideoBackbone(ctx, net, 768, _swin_features, norm=True)
    model.channels_last_taps = ("net.patch_embed", "net.features", "net.norm")  # (B, T, H, W, C) maps
    return model


# ----------------------------------------------------------------------------- timm (TSN, TSM)


def _frames_features(frames: int) -> Features:
    def features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape[:3]
        maps = net.forward_features(x.transpose(1, 2).reshape(b * t, c, *x.shape[3:]))  # (B*T, D, h, w)
        return maps.view(b, t, *maps.shape[1:]).transpose(1, 2)

    return features


def temporal_shift(frames: int, fold_div: int = 8) -> Callable[[nn.Module, tuple], tuple]:
    """A forward pre-hook shifting 1/``fold_div`` of the input's channels one frame back in time
    and as many forward (TSM's residual shift), on (B*T, C, H, W) inputs of ``frames`` frames."""
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        bt, c = x.shape[:2]
        v = x.view(bt // frames, frames, c, *x.shape[2:])
        fold = c // fold_div
        out = torch.zeros_like(v)
        out[:, :-1, :fold] = v[:, 1:, :fold]  # the next frame's channels
        out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]  # the previous frame's
        out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
        return (out.view_as(x), *args[1:])

    return hook


def _timm(arch: str, shift: bool) -> Callable[[ModelContext], VideoBackbone]:
    def factory(ctx: ModelContext) -> VideoBackbone:
        import timm

        frames = _rgb_shape(ctx)[0]
        net = timm.create_model(arch, pretrained=False, num_classes=0)
        if shift:  # hooks, not wrappers: the parameter names stay timm's, so its checkpoints load
            for block in (m for name, m in net.named_modules() if hasattr(m, "conv1") and name.startswith("layer")):
                block.conv1.register_forward_pre_hook(temporal_shift(frames))
        stats = (net.pretrained_cfg.get("mean", IMAGENET_MEAN), net.pretrained_cfg.get("std", IMAGENET_STD))
        return VideoBackbone(ctx, net, net.num_features, _frames_features(frames), stats=stats)

    return factory


def _timm_vit(arch: str) -> Callable[[ModelContext], VideoBackbone]:
    """A timm ViT per frame (AVT-b's backbone: ViT-B/16 on each frame), its patch tokens as the
    frame's map; its position table is built for the data's frame size (a 224 px checkpoint loads
    at 224 px: at another size its position table's shape is named as a mismatch)."""
    def factory(ctx: ModelContext) -> VideoBackbone:
        import timm

        _, _, h, w = _rgb_shape(ctx)
        if h % 16 or w % 16:
            raise IncompatibleError(f"a ViT/16 reads 16 x 16 px patches; this data gives frames of {h} x {w}")
        net = timm.create_model(arch, pretrained=False, num_classes=0, img_size=(h, w))

        def features(n: nn.Module, x: torch.Tensor) -> torch.Tensor:
            b, c, t = x.shape[:3]
            tokens = n.forward_features(x.transpose(1, 2).reshape(b * t, c, *x.shape[3:]))[:, n.num_prefix_tokens:]
            maps = tokens.transpose(1, 2).reshape(b * t, tokens.shape[2], x.shape[3] // 16, x.shape[4] // 16)
            return maps.view(b, t, *maps.shape[1:]).transpose(1, 2)

        stats = (net.pretrained_cfg.get("mean", IMAGENET_MEAN), net.pretrained_cfg.get("std", IMAGENET_STD))
        return VideoBackbone(ctx, net, net.num_features, features, stats=stats)

    return factory


# ----------------------------------------------------------------------------- transformers


def _videomae(hidden: int, heads: int) -> Callable[[ModelContext], VideoBackbone]:
    def factory(ctx: ModelContext) -> VideoBackbone:
        from transformers import VideoMAEConfig, VideoMAEModel

        t, _, h, w = _rgb_shape(ctx)
        if t % 2 or h % 16 or w % 16:
            raise IncompatibleError(f"VideoMAE reads tubelets of 2 frames x 16 x 16 px; this data gives {t} frames "
                                    f"of {h} x {w}")
        cfg = VideoMAEConfig(image_size=h, num_frames=t, hidden_size=hidden, num_hidden_layers=12,
                             num_attention_heads=heads, intermediate_size=4 * hidden, use_mean_pooling=True)
        net = VideoMAEModel(cfg)

        def features(n: nn.Module, x: torch.Tensor) -> torch.Tensor:
            # VideoMAE's embedding and encoder, with its 1-D sinusoid table rebuilt for a clip of
            # another size (XKD's local views: a quarter of the frames)
            from transformers.models.videomae.modeling_videomae import get_sinusoid_encoding_table

            p = n.embeddings.patch_embeddings.projection(x)  # (B, D, T', h, w)
            tokens = p.flatten(2).transpose(1, 2)
            pos = n.embeddings.position_embeddings
            if pos.shape[1] != tokens.shape[1]:
                pos = get_sinusoid_encoding_table(tokens.shape[1], tokens.shape[2])
            out = n.encoder(tokens + pos.to(tokens)).last_hidden_state
            return out.transpose(1, 2).reshape(p.shape)

        return VideoBackbone(ctx, net, hidden, features, stats=(IMAGENET_MEAN, IMAGENET_STD), norm=True)

    return factory


# ----------------------------------------------------------------------------- audio


class AudioBackbone(nn.Module):
    """A library audio network over the log-mel spectrogram (B, 1, mel, time): ``features(net, x)``
    gives its last map (B, D, f, t), mel cells by time cells; ``tokens`` are its time cells (mel
    averaged), ``spatial`` the map, and ``pool(net, tokens)`` (B, D, t) the embedding a linear head
    classifies."""

    checkpoint_roots = ("net",)

    def __init__(self, ctx: ModelContext, net: nn.Module, dim: int, features: Callable, pool: Callable) -> None:
        super().__init__()
        self.net, self.dim, self._features, self._pool = net, dim, features, pool
        self.head = nn.Linear(dim, ctx.num_classes)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        spatial = self._features(self.net, inputs["audio"].float())  # (B, D, f, t)
        seq = spatial.mean(dim=2)
        feature = self._pool(self.net, seq)
        return {"logits": self.head(feature), "feature": feature, "tokens": seq.transpose(1, 2), "spatial": spatial}


class ConvBlock(nn.Module):
    """PANNs' ConvBlock: two 3 x 3 convolutions with batch norm and ReLU, then 2 x 2 average pooling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1, self.bn2 = nn.BatchNorm2d(cout), nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor, pool: int = 2) -> torch.Tensor:
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(x, pool) if pool > 1 else x


class Cnn14(nn.Module):
    """PANNs' CNN14 (Kong et al. 2020, Table 1) after its log-mel front end: batch norm over mel
    bands, six ConvBlocks (64 ... 2048 channels; the last without pooling), dropout 0.2 after each,
    mean over mel, max + mean over time, dropout 0.5, fc1 (2048) with ReLU: the embedding."""

    def __init__(self, mel_bins: int) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(mel_bins)
        widths = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            self.add_module(f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(2048, 2048)

    def maps(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, mel, time) -> (B, 2048, mel', time'), PANNs' layout (B, 1, time, mel) inside."""
        x = self.bn0(x.transpose(2, 3).transpose(1, 3)).transpose(1, 3)  # (B, 1, time, mel), bn over mel
        for i in range(6):
            x = F.dropout(getattr(self, f"conv_block{i + 1}")(x, 1 if i == 5 else 2), 0.2, self.training)
        return x.transpose(2, 3)

    def embed(self, seq: torch.Tensor) -> torch.Tensor:
        x = seq.max(dim=2).values + seq.mean(dim=2)
        return F.relu(self.fc1(F.dropout(x, 0.5, self.training)))


def _cnn14(ctx: ModelContext) -> AudioBackbone:
    mel, time = needs_log_mel(ctx, "cnn14")
    if min(mel, time) < 32:
        raise IncompatibleError(f"cnn14 pools its input 2 x 2 five times: it needs at least 32 x 32 mel x time "
                                f"cells; this data gives {mel} x {time}")
    return AudioBackbone(ctx, Cnn14(mel), 2048, lambda n, x: n.maps(x), lambda n, seq: n.embed(seq))


def _ast(ctx: ModelContext) -> AudioBackbone:
    from transformers import ASTConfig, ASTModel

    mel, time = needs_log_mel(ctx, "AST")
    if min(mel, time) < 16:
        raise IncompatibleError(f"AST reads 16 x 16 patches: it needs at least 16 x 16 mel x time cells; this data "
                                f"gives {mel} x {time}")
    # patches without overlap (as ViTs and XKD's audio student cut them; AST's paper overlaps them at a
    # stride of 10), so each cell is a whole block of the spectrogram
    cfg = ASTConfig(num_mel_bins=mel, max_length=time, frequency_stride=16, time_stride=16)
    net = ASTModel(cfg)
    f_cells, t_cells = net.embeddings.get_shape(cfg)

    def features(n: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # AST's embeddings, encoder and norm, its position table interpolated along time for a
        # spectrogram of another length (XKD's local views: a crop of the time axis)
        emb = n.embeddings
        patches = emb.patch_embeddings(x[:, 0].transpose(1, 2))  # (B, f*t, D), mel-major
        t = patches.shape[1] // f_cells
        pos = emb.position_embeddings
        grid = pos[:, 2:]
        if t != t_cells:
            grid = F.interpolate(grid.reshape(1, f_cells, t_cells, -1).permute(0, 3, 1, 2), size=(f_cells, t),
                                 mode="bilinear", align_corners=False).permute(0, 2, 3, 1).reshape(1, f_cells * t, -1)
        b = patches.shape[0]
        tokens = torch.cat([emb.cls_token.expand(b, -1, -1) + pos[:, :1], emb.distillation_token.expand(b, -1, -1)
                            + pos[:, 1:2], patches + grid], dim=1)
        h = emb.dropout(tokens)
        for layer in n.layers:  # ASTModel.forward's loop (no attention mask: every patch is real)
            h = layer(h, None)
        out = n.layernorm(h)[:, 2:]
        return out.transpose(1, 2).reshape(b, -1, f_cells, t)

    def pool(n: nn.Module, seq: torch.Tensor) -> torch.Tensor:
        return seq.mean(dim=2)

    return AudioBackbone(ctx, net, cfg.hidden_size, features, pool)


class WaveBackbone(nn.Module):
    """A transformers speech encoder over the waveform (B, S): each clip normalised to zero mean
    and unit variance (as wav2vec2's feature extractor does), the convolutional feature encoder
    and the transformer; ``tokens`` are its frames (20 ms each at 16 kHz), ``feature`` their mean,
    ``spatial`` the frames as a (B, D, 1, T) map."""

    checkpoint_roots = ("net",)

    def __init__(self, ctx: ModelContext, net: nn.Module, dim: int) -> None:
        super().__init__()
        self.net, self.dim = net, dim
        self.head = nn.Linear(dim, ctx.num_classes)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["audio"].float()
        x = (x - x.mean(dim=1, keepdim=True)) / torch.sqrt(x.var(dim=1, keepdim=True) + 1e-7)
        seq = self.net(input_values=x).last_hidden_state  # (B, T, D)
        feature = seq.mean(dim=1)
        return {"logits": self.head(feature), "feature": feature, "tokens": seq,
                "spatial": seq.transpose(1, 2).unsqueeze(2)}


def _speech(kind: str) -> Callable[[ModelContext], WaveBackbone]:
    def factory(ctx: ModelContext) -> WaveBackbone:
        shape = ctx.shapes["audio"]
        if len(shape) != 1:
            raise IncompatibleError(f"{kind}-base reads waveforms; this data gives a log-mel spectrogram {tuple(shape)}: "
                                    "--set dataset.audio_input=waveform")
        if shape[0] < 400:  # the feature encoder's receptive field: 25 ms at 16 kHz
            raise IncompatibleError(f"{kind}-base needs at least 400 samples of audio; this data gives {shape[0]}")
        from transformers import HubertConfig, HubertModel, Wav2Vec2Config, Wav2Vec2Model

        config, model = {"wav2vec2": (Wav2Vec2Config, Wav2Vec2Model), "hubert": (HubertConfig, HubertModel)}[kind]
        cfg = config()
        return WaveBackbone(ctx, model(cfg), cfg.hidden_size)

    return factory


# ----------------------------------------------------------------------------- the catalogue

TAPS = ("logits", "feature", "tokens", "spatial")
#: the input each kind of model is shown at by ``list -v``: 16 frames of 112 px (R(2+1)D's and
#: XKD's setting), flow at the same size, 1 s of 64-band log-mel at 10 ms hops (PANNs' bands)
SAMPLES = {"rgb": (16, 3, 112, 112), "flow": (16, 2, 112, 112), "audio": (1, 64, 96)}
#: 1 s of waveform at 16 kHz, for the speech encoders
WAVE = (16000,)


#: the encoder a method builds beside a student for the other modality (XKD): a transformer's is a
#: transformer, a CNN's a CNN
PARTNERS = {"videomae-s": {"audio": "ast"}, "videomae-b": {"audio": "ast"}, "mvit-v2-s": {"audio": "ast"},
            "swin3d-t": {"audio": "ast"}, "ast": {"rgb": "videomae-b"}, "cnn14": {"rgb": "r2plus1d-18"}}


def library_models() -> list[tuple[str, str, Callable[[ModelContext], nn.Module], tuple[str, ...],
                                   tuple[str, ...], dict[str, tuple[int, ...]], dict[str, str]]]:
    """(name, description, factory, modalities, taps, sample input, partners) of every model
    above, registered as a student and as a teacher (``--student NAME``, ``--teacher NAME``)."""
    rgb, flow, audio = ("rgb",), ("flow",), ("audio",)
    out: list[Any] = [
        ("r3d-18", "torchvision's 3D ResNet-18 (Tran et al. 2018), random init (33M params)", _resnet3d("r3d_18"), rgb),
        ("mc3-18", "torchvision's mixed-convolution ResNet-18 (3D then 2D blocks), random init (12M)",
         _resnet3d("mc3_18"), rgb),
        ("r2plus1d-18", "torchvision's R(2+1)D-18, the factorised 3D ResNet (Tran et al. 2018), random init (31M)",
         _resnet3d("r2plus1d_18"), rgb),
        ("s3d", "torchvision's S3D (Xie et al. 2018), separable 3D Inception, random init (8M)", _s3d, rgb),
        ("mvit-v2-s", "torchvision's MViTv2-S (Li et al. 2022), 16 frames of 224 px only, random init (34M)",
         _mvit, rgb),
        ("swin3d-t", "torchvision's Video Swin-T (Liu et al. 2022), random init (28M)", _swin3d, rgb),
        ("tsn-resnet50", "TSN (Wang et al. 2016): timm's ResNet-50 per frame, averaged over time, random init (24M)",
         _timm("resnet50", False), rgb),
        ("tsm-resnet50", "TSM (Lin et al. 2019): TSN's ResNet-50, 1/8 + 1/8 channels shifted in time, random init (24M)",
         _timm("resnet50", True), rgb),
        ("tsn-resnet18", "TSN with timm's ResNet-18 per frame, random init (11M)", _timm("resnet18", False), rgb),
        ("tsn-vit-b16", ("timm's ViT-B/16 per frame (AVT-b's backbone, Girdhar & Grauman 2021), averaged over "
         "time, random init (86M)"), _timm_vit("vit_base_patch16_224"), rgb),
        ("videomae-s", "transformers' VideoMAE ViT-S/16 (Tong et al. 2022), tubelets of 2 frames, random init (22M)",
         _videomae(384, 6), rgb),
        ("videomae-b", "transformers' VideoMAE ViT-B/16, random init (86M)", _videomae(768, 12), rgb),
        ("flow-r2plus1d-18", "R(2+1)D-18 on 2-channel optical flow (an I3D-flow-style stream), random init (31M)",
         _resnet3d("r2plus1d_18", "flow"), flow),
        ("cnn14", "PANNs' CNN14 (Kong et al. 2020), the AudioSet CNN, on the log-mel spectrogram, random init (80M)",
         _cnn14, audio),
        ("ast", ("transformers' Audio Spectrogram Transformer (Gong et al. 2021), ViT-B, 16 x 16 patches, no overlap, "
         "random init (86M)"),
         _ast, audio),
        ("wav2vec2-base", ("transformers' wav2vec 2.0 Base (Baevski et al. 2020) on the waveform "
         "(dataset.audio_input=waveform), random init (94M)"), _speech("wav2vec2"), audio),
        ("hubert-base", ("transformers' HuBERT Base (Hsu et al. 2021) on the waveform "
         "(dataset.audio_input=waveform), random init (94M)"), _speech("hubert"), audio),
    ]
    samples = {"mvit-v2-s": {"rgb": (16, 3, 224, 224)}, "wav2vec2-base": {"audio": WAVE}, "hubert-base": {"audio": WAVE}}
    return [(*row, TAPS, samples.get(row[0], {row[3][0]: SAMPLES[row[3][0]]}),
             PARTNERS.get(row[0], {"audio": "cnn14"} if row[3] == rgb else {})) for row in out]
