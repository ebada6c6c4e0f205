"""wav2vec2 audio encoder built from a tiny config (no download): frames, freezing, params, offline errors."""
import pytest
import torch

from models.audio import AudioEncoder, AudioEncoderConfig
from models.presets import save_tiny_wav2vec2, tiny_wav2vec2_config

torch.set_num_threads(1)


def test_frame_count_and_frozen_cnn():
    enc = AudioEncoder.from_config(AudioEncoderConfig(), tiny_wav2vec2_config())
    enc.eval()
    y = enc(torch.randn(2, 32000))
    assert y.shape == (2, 99, 32)  # floor((32000 - 400) / 320) + 1
    cnn = list(enc.wav2vec2.feature_extractor.parameters())
    assert cnn and all(not p.requires_grad for p in cnn)
    assert any(p.requires_grad for p in enc.wav2vec2.encoder.parameters())
    # gradients reach the transformer but not the CNN
    enc.train()
    enc(torch.randn(2, 32000)).sum().backward()
    assert all(p.grad is None for p in cnn)
    assert enc.wav2vec2.encoder.layers[0].attention.q_proj.weight.grad is not None


def _save_without_dropout(directory):
    from transformers import Wav2Vec2Model
    cfg = tiny_wav2vec2_config()
    for k in ("hidden_dropout", "attention_dropout", "activation_dropout", "feat_proj_dropout"):
        setattr(cfg, k, 0.0)
    torch.manual_seed(0)
    Wav2Vec2Model(cfg).save_pretrained(directory)
    return directory


def test_train_mode_masking_and_layerdrop_are_params(tmp_path):
    directory = _save_without_dropout(str(tmp_path / "w2v"))
    x = torch.randn(1, 32000)

    def out(train, **kw):
        enc = AudioEncoder(AudioEncoderConfig(model=directory, local_files_only=True, pretrained=True, **kw)).train(train)
        torch.manual_seed(1)
        return enc, enc(x)

    _, ref = out(False, mask_time_prob=0.5)
    enc, masked = out(True, mask_time_prob=0.5, mask_time_length=5, layerdrop=0.0)
    c = enc.wav2vec2.config
    assert (c.mask_time_prob, c.mask_time_length, c.layerdrop) == (0.5, 5, 0.0)
    assert not torch.allclose(masked, ref, atol=1e-4)        # train mode masks frames
    _, unmasked = out(True, mask_time_prob=0.0, layerdrop=0.0)
    assert torch.allclose(unmasked, ref, atol=1e-5)          # switched off by the params, nothing else differs
    _, dropped = out(True, mask_time_prob=0.0, layerdrop=1.0)
    assert not torch.allclose(dropped, ref, atol=1e-4)       # layerdrop=1 skips every layer in train mode


def test_loads_local_directory_offline(tmp_path):
    directory = save_tiny_wav2vec2(str(tmp_path / "w2v"), seed=3)
    enc = AudioEncoder(AudioEncoderConfig(model=directory, local_files_only=True, pretrained=True))
    again = AudioEncoder(AudioEncoderConfig(model=directory, local_files_only=True, pretrained=True))
    assert enc.out_dim == 32
    for (n, p), (_, q) in zip(enc.state_dict().items(), again.state_dict().items()):
        assert torch.equal(p, q), n


def test_missing_weights_offline_names_what_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as e:
        AudioEncoder(AudioEncoderConfig(pretrained=True))  # default hub id, offline, empty cache
    msg = str(e.value)
    assert "facebook/wav2vec2-base-960h" in msg and str(tmp_path / "hf") in msg and "model.audio.model" in msg
    missing_dir = tmp_path / "empty"
    missing_dir.mkdir()
    with pytest.raises(FileNotFoundError, match="lacks a loadable model"):
        AudioEncoder(AudioEncoderConfig(model=str(missing_dir), local_files_only=True, pretrained=True))


def test_random_init_from_params_needs_no_download(tmp_path, monkeypatch):
    from models.audio import load_wav2vec2

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache, offline: nothing to load from
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = AudioEncoderConfig(pretrained=False, hidden=64, layers=2, heads=2, ffn=128, conv_dim=32)
    torch.manual_seed(0)
    enc = AudioEncoder(cfg).eval()
    c = enc.wav2vec2.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size) == (64, 2, 2, 128)
    assert c.conv_dim == (32,) * 7 and enc.out_dim == 64 and not enc.pretrained
    assert "NOT pretrained" in enc.describe()
    assert enc(torch.randn(1, 32000)).shape == (1, 99, 64)
    torch.manual_seed(0)
    again = load_wav2vec2(cfg)
    assert all(torch.equal(p, q) for p, q in zip(enc.wav2vec2.state_dict().values(), again.state_dict().values()))
    base = AudioEncoderConfig(pretrained=False, hidden=768, layers=12, heads=12, ffn=3072)  # wav2vec2-base
    from models.audio import random_wav2vec2_config
    b = random_wav2vec2_config(base)
    assert (b.hidden_size, b.num_hidden_layers, b.num_attention_heads, b.intermediate_size) == (768, 12, 12, 3072)
    with pytest.raises(ValueError, match="multiple"):
        random_wav2vec2_config(AudioEncoderConfig(pretrained=False, hidden=100, heads=3))
