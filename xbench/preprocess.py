"""How the harness's models read raw inputs (part of the public API plugins may import): a model a
plugin adds beside the task's student (another modality's encoder, a view of the input) reads
frames on the same scale as the student does, and audio as the same log-mel spectrogram."""

from __future__ import annotations

import torch


def rgb_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 rgb frames as float in [-0.5, 0.5], the scale every built-in video model reads."""
    return frames.float().div(255.0).sub(0.5)


def log_mel(wave: torch.Tensor, rate: int, n_mels: int = 32, n_frames: int = 32) -> torch.Tensor:
    """(N, S) waveforms -> (N, 1, n_mels, n_frames) log-mel spectrograms (hand-built mel bank,
    so no torchaudio dependency)."""
    n_fft = 512
    hop = max(wave.shape[1] // n_frames, 1)
    spec = torch.stft(wave, n_fft, hop_length=hop, window=torch.hann_window(n_fft),
                      return_complex=True).abs().pow(2)[..., :n_frames]  # (N, F, T)
    freqs = torch.linspace(0, rate / 2, spec.shape[1])
    mel = lambda f: 2595.0 * torch.log10(1.0 + f / 700.0)
    edges = torch.linspace(float(mel(torch.tensor(50.0))), float(mel(torch.tensor(rate / 2))), n_mels + 2)
    m = mel(freqs)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = torch.clamp(torch.minimum((m - lo) / (mid - lo), (hi - m) / (hi - mid)), min=0)
    out = torch.log(torch.einsum("mf,nft->nmt", bank, spec) + 1e-6)
    # per-clip standardisation: independent of which other clips share the split or batch
    mean = out.mean(dim=(1, 2), keepdim=True)
    std = out.std(dim=(1, 2), keepdim=True)
    return ((out - mean) / (std + 1e-6)).unsqueeze(1)
