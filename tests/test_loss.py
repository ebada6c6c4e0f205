"""Symmetric InfoNCE: the paper's formula, and global-batch negatives under DDP (2 gloo processes)."""
import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from models.audio import AudioEncoder, AudioEncoderConfig
from models.avclip import AVContrastiveModel, AVModelConfig, HeadConfig
from models.loss import InfoNCELoss
from models.presets import TINY_VIDEO, tiny_wav2vec2_config
from train.distributed import DistInfo, wrap_ddp

torch.set_num_threads(1)


def reference_loss(zv, za, tau):
    """Eq. 1-3 written out term by term."""
    zv = zv / zv.norm(dim=1, keepdim=True)
    za = za / za.norm(dim=1, keepdim=True)
    n = zv.shape[0]
    total = 0.0
    for i in range(n):
        den_va = sum(math.exp(float(zv[i] @ za[j]) / tau) for j in range(n))
        den_av = sum(math.exp(float(za[i] @ zv[j]) / tau) for j in range(n))
        l_va = -math.log(math.exp(float(zv[i] @ za[i]) / tau) / den_va)
        l_av = -math.log(math.exp(float(za[i] @ zv[i]) / tau) / den_av)
        total += 0.5 * l_av + 0.5 * l_va
    return total / n


def test_matches_paper_formula():
    g = torch.Generator().manual_seed(0)
    zv, za = torch.randn(6, 16, generator=g), torch.randn(6, 16, generator=g)
    for tau in (0.1, 0.5):
        got = InfoNCELoss(tau)(zv.double(), za.double())
        assert abs(float(got) - reference_loss(zv.double(), za.double(), tau)) < 1e-5


def test_normalised_and_symmetric():
    g = torch.Generator().manual_seed(1)
    zv, za = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    loss = InfoNCELoss(0.1)
    assert torch.allclose(loss(zv, za), loss(3 * zv, 0.2 * za), atol=1e-5)   # L2-normalised inside
    assert torch.allclose(loss(zv, za), loss(za, zv), atol=1e-6)             # symmetric in the modalities
    assert loss(zv, zv) < loss(zv, za)                                       # matched pairs score lower
    assert float(loss(zv, zv.roll(1, 0))) > math.log(5)                      # shuffled pairs: above chance


def tiny_model(seed=0):
    torch.manual_seed(seed)
    audio = AudioEncoder.from_config(AudioEncoderConfig(), tiny_wav2vec2_config())
    return AVContrastiveModel(AVModelConfig(video=TINY_VIDEO, head=HeadConfig(tokens=2, dim=16)), audio)


def make_batch(n=4, t=8):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, t, 88, 88, generator=g), torch.randn(n, t * 640, generator=g)


def grads_of(model, video, audio, tau=0.1, group=None):
    zv, za = model(video, audio)
    InfoNCELoss(tau, group)(zv, za).backward()


def _ddp_worker(rank, world, init_file, state_path, out_path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    model = tiny_model()
    model.load_state_dict(torch.load(state_path))
    model.eval()  # BN running stats and no dropout/masking: the only difference left is the sharding
    ddp = wrap_ddp(model, DistInfo(rank=rank, world=world))  # the trainer's wrapper
    video, audio = make_batch()
    per = video.shape[0] // world
    sl = slice(rank * per, (rank + 1) * per)
    grads_of(ddp, video[sl], audio[sl], group=dist.new_group())  # the trainer's own group for the loss
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters() if p.grad is not None}, out_path)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.slow  # a real 2-process gloo group
def test_ddp_gradients_equal_single_process_on_concatenated_batch(tmp_path):
    model = tiny_model()
    state = tmp_path / "state.pt"
    torch.save(model.state_dict(), state)
    model.eval()
    grads_of(model, *make_batch())
    ref = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    out = tmp_path / "grads.pt"
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(state), str(out)), nprocs=2,
                       join=True, start_method="spawn")
    got = torch.load(out)
    assert set(got) == set(ref) and len(ref) > 20
    worst = max(float((got[n] - ref[n]).abs().max()) for n in ref)
    scale = max(float(ref[n].abs().max()) for n in ref)
    assert worst < 1e-5, (worst, scale)
    # the gathered negatives matter: a local-only loss would give different gradients
    model.zero_grad()
    video, audio = make_batch()
    for h in (slice(0, 2), slice(2, 4)):
        zv, za = model(video[h], audio[h])
        (0.5 * InfoNCELoss(0.1)(zv, za)).backward()
    local_only = max(float((p.grad - ref[n]).abs().max()) for n, p in model.named_parameters() if n in ref)
    assert local_only > 100 * max(worst, 1e-7)
