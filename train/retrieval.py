"""Audio-to-video retrieval: for each audio window, where does its own video window rank among all
video windows of the gallery? Chance top-k is k / N."""
from __future__ import annotations

import torch
from torch.nn import functional as F


def a2v_topk(z_audio: torch.Tensor, z_video: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    za, zv = F.normalize(z_audio.float(), dim=-1), F.normalize(z_video.float(), dim=-1)
    sim = za @ zv.T                                            # (N audio, N video)
    own = sim.diagonal().unsqueeze(1)
    rank = (sim > own).sum(dim=1)                              # 0 = own video ranked first
    return {f"a2v_top{k}": float((rank < k).float().mean()) for k in ks}


@torch.no_grad()
def embed_windows(model, windows, batch_size: int, device: torch.device, autocast: bool):
    """windows: iterable of (key, video (T, H, W), audio (S,)) -> (keys, z_video, z_audio) on CPU."""
    keys, zv, za, vb, ab = [], [], [], [], []

    def flush():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            v, a = model(torch.stack(vb).to(device), torch.stack(ab).to(device))
        zv.append(v.float().cpu())
        za.append(a.float().cpu())
        vb.clear()
        ab.clear()

    for key, v, a in windows:
        keys.append(key)
        vb.append(v)
        ab.append(a)
        if len(vb) == batch_size:
            flush()
    if vb:
        flush()
    if not keys:
        return keys, torch.empty(0), torch.empty(0)
    return keys, torch.cat(zv), torch.cat(za)
