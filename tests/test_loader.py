"""WebDataset loader on the shards the real pipeline made from the GRID clips (the session's test project):
windows, sync, augmentation, sharding."""
import json

import numpy as np
import pytest
import torch
import webdataset as wds
from pipeline_project import collected_shards, npy_bytes, pretrain_shards, read_samples, repack

from train.augment import AugmentConfig, augment_clip
from preprocess.shardformat import decode_sample, iter_samples
from train.data import (
    LoaderConfig,
    ShardInfo,
    TrainWindows,
    eval_windows,
    read_index,
    train_loader,
)

torch.set_num_threads(1)
NO_AUG = AugmentConfig(blur_prob=0, noise_prob=0, brightness=0)


def LC(**kw) -> LoaderConfig:  # noqa: N802
    """The GRID test clips have 75 frames: below the default min_frames (100) of real pretraining."""
    return LoaderConfig(**{"min_frames": 50, "windows_per_clip": 1, **kw})


@pytest.fixture(scope="module")
def shards(packed_project):
    every = pretrain_shards(packed_project, "train", "val")  # the 6 GRID clips, in the pipeline's train and val shards
    assert sum(s.samples for s in every) == 6 and len(every) == 2
    return every


@pytest.fixture(scope="module")
def decoded(shards):
    """video_id -> (video, audio) of each whole sample, decoded by WebDataset rather than train.data."""
    return {s["json"]["video_id"]: (s["video.npy"], s["audio.npy"]) for s in read_samples(shards)}


def test_shard_contract_round_trip(shards, decoded):
    samples = list(iter_samples([s.path for s in shards]))
    assert [s["__key__"] for s in samples] == [s["__key__"] for s in read_samples(shards, decode=False)]
    for sample in samples:
        key, video, audio, meta = decode_sample(sample)
        t, (full_video, full_audio) = meta["n_frames"], decoded[meta["video_id"]]
        assert key == meta["key"] and t >= 50  # a 2 s window fits
        assert video.dtype == np.uint8 and video.shape == (t, 96, 96) and np.array_equal(video, full_video)
        assert audio.dtype == np.float32 and audio.shape == (t * 640,) and meta["sample_rate"] == 16000
        assert np.array_equal(audio, full_audio.reshape(-1))
        assert np.load(__import__("io").BytesIO(sample["audio.npy"]), allow_pickle=False).shape == (t, 640)


def test_windows_are_synchronised_two_seconds(shards, decoded):
    cfg = LC(batch_size=3, num_workers=0, augment=NO_AUG)
    ds = TrainWindows(shards, cfg, seed=0)
    batches = list(ds)
    assert len(batches) == 2  # 6 clips // 3
    for b in batches:
        assert b["video"].shape == (3, 50, 88, 88) and b["audio"].shape == (3, 32000)
        for key, v, a in zip(b["key"], b["video"], b["audio"]):
            vid, start = key.split("__")[1], int(key.rsplit("@", 1)[1])
            full_v, full_a = decoded[vid]
            # audio window = exactly the clip's samples of frames start..start+50
            assert np.array_equal(a.numpy(), full_a.reshape(-1)[start * 640:(start + 50) * 640])
            # video window = the same frames, under one crop offset shared by all frames
            raw = (v.numpy() * 0.165 + 0.421) * 255
            frames = full_v[start:start + 50].astype(np.float32)
            hits = [(y, x) for y in range(9) for x in range(9)
                    if np.abs(frames[:, y:y + 88, x:x + 88] - raw).max() < 0.01]
            assert len(hits) == 1


def test_same_augmentation_on_every_frame():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (96, 96), dtype=np.uint8)
    clip = np.repeat(frame[None], 10, axis=0)
    cfg = AugmentConfig(blur_prob=1.0, noise_prob=0.0, brightness=0.2)
    for seed in range(5):
        out = augment_clip(clip, np.random.default_rng(seed), cfg)
        assert out.shape == (10, 88, 88)
        assert torch.equal(out, out[:1].expand_as(out))  # crop, blur and brightness shared by all frames
    a = augment_clip(clip, np.random.default_rng(1), cfg)
    b = augment_clip(clip, np.random.default_rng(2), cfg)
    assert not torch.equal(a, b)
    # normalisation: a mid-grey 0.421 frame maps to 0
    grey = np.full((2, 96, 96), round(0.421 * 255), np.uint8)
    assert augment_clip(grey, np.random.default_rng(0), NO_AUG).abs().max() < 0.02


def test_epoch_seeded_shuffling_replays(shards):
    cfg = LC(batch_size=2, num_workers=0, shuffle_buffer=2)
    ds = TrainWindows(shards, cfg, seed=7)
    runs = []
    for epoch in (0, 1, 0):
        ds.set_epoch(epoch)
        runs.append(list(ds))
    keys = [[k for b in r for k in b["key"]] for r in runs]
    assert keys[0] == keys[2]                # same epoch, same seed: identical windows and order ...
    assert all(torch.equal(x["video"], y["video"]) for x, y in zip(runs[0], runs[2]))  # ... and augmentation
    assert keys[0] != keys[1]                # a new epoch reshuffles
    ds.set_epoch(1)
    other = TrainWindows(shards, cfg, seed=8)
    other.set_epoch(1)
    assert [k for b in other for k in b["key"]] != keys[1]  # and the seed matters


@pytest.fixture(scope="module")
def uneven(shards, packed_project, tmp_path_factory):
    """Shards of 5, 1 and 2 clips (8 samples): the 6 GRID samples and 2 CREMA-D samples of the pipeline,
    repacked byte for byte (the pipeline fills every shard but the last of a split)."""
    crema = read_samples(collected_shards(packed_project, "eval", "test"), decode=False)
    samples = read_samples(shards, decode=False) + crema[:2]
    return repack(samples, [5, 1, 2], tmp_path_factory.mktemp("uneven"))


@pytest.mark.parametrize("world,workers", [(2, 0), (4, 0), (2, 2)])
def test_every_rank_gets_the_same_number_of_batches(uneven, world, workers):
    # 4 ranks x 2 workers > 3 shards exercises small corpora
    shards = uneven
    cfg = LC(batch_size=2, num_workers=workers, augment=NO_AUG)
    counts = []
    for rank in range(world):
        loader, ds = train_loader(shards, cfg, seed=0, rank=rank, world=world)
        ds.set_epoch(1)
        batches = list(loader)
        counts.append(len(batches))
        assert all(b["video"].shape[0] == 2 for b in batches)
    assert counts == [max(1, 8 // (2 * world))] * world


def test_small_corpus_split_is_disjoint_across_ranks(shards):
    # fewer shards than readers -> sample-level split: the readers' first passes partition the corpus
    cfg = LC(batch_size=1, num_workers=0, shuffle_buffer=1, augment=NO_AUG)
    per_rank = []
    for rank in range(4):  # 4 ranks, 1 reader each: 4 slots > 3 shards
        ds = TrainWindows(shards, cfg, seed=0, rank=rank, world=4)
        per_rank.append({k.rsplit("@", 1)[0] for b in ds for k in b["key"]})
    assert all(len(s) == 1 for s in per_rank)  # 6 // 4 = 1 batch of 1 each
    assert len(set.union(*per_rank)) == 4      # and no two ranks read the same clip


def test_colour_crops_become_gray_and_clips_without_audio_are_skipped(tmp_path, decoded):
    video, audio = next(iter(decoded.values()))
    with wds.TarWriter(str(tmp_path / "train-000000.tar")) as w:
        for i, has_audio in enumerate([False, True]):
            w.write({"__key__": f"grid__rgb__{i:04d}", "video.npy": npy_bytes(np.repeat(video[..., None], 3, -1)),
                     "audio.npy": npy_bytes(audio), "json": json.dumps({"has_audio": has_audio}).encode()})
    shards = [ShardInfo(str(tmp_path / "train-000000.tar"), 2)]
    _, gray, _, _ = decode_sample(next(iter_samples([shards[0].path])))
    assert gray.shape == video.shape and np.abs(gray.astype(int) - video).max() <= 1
    wins = list(eval_windows(shards, LC()))
    assert [k for k, _, _ in wins] == ["grid__rgb__0001@12"]
    batches = list(TrainWindows(shards, LC(batch_size=2, num_workers=0)))
    assert {k.rsplit("@", 1)[0] for k in batches[0]["key"]} == {"grid__rgb__0001"}


def test_dotted_key_is_reported(tmp_path, decoded):
    video, audio = next(iter(decoded.values()))
    with wds.TarWriter(str(tmp_path / "train-000000.tar")) as w:
        w.write({"__key__": "grid__a.b__0000", "video.npy": npy_bytes(video), "audio.npy": npy_bytes(audio)})
    with pytest.raises(ValueError, match="dotted key"):
        list(TrainWindows([ShardInfo(str(tmp_path / "train-000000.tar"), 1)], LC(batch_size=1)))


def test_index_and_eval_windows(tmp_path, shards):
    (tmp_path / "pretrain.json").write_text(json.dumps(
        {"train": [{"path": s.path, "sha256": "x", "samples": s.samples} for s in shards], "val": []}))
    got = read_index(tmp_path / "pretrain.json", "train")
    assert got == shards and read_index(tmp_path / "pretrain.json", "val") == []
    cfg = LC()
    wins = list(eval_windows(shards, cfg, starts=(0, 12, 25)))
    assert len(wins) == 18 and wins[1][0].endswith("@12")
    again = list(eval_windows(shards, cfg, starts=(0, 12, 25), limit=4))
    assert len(again) == 4 and all(torch.equal(a[1], b[1]) for a, b in zip(wins, again))


def test_each_clip_read_once_per_epoch_over_ranks_and_workers(uneven):
    # 8 clips, 2 ranks x 2 workers, batch 2: 2 batches per rank use all 8 clips, each exactly once
    cfg = LC(batch_size=2, num_workers=2, augment=NO_AUG)
    for epoch in (0, 1):
        keys = []
        for rank in range(2):
            loader, ds = train_loader(uneven, cfg, seed=0, rank=rank, world=2)
            ds.set_epoch(epoch)
            keys += [k.rsplit("@", 1)[0] for b in loader for k in b["key"]]
        assert len(keys) == 8 and len(set(keys)) == 8


def test_workers_persist_across_epochs_and_see_the_epoch(shards):
    cfg = LC(batch_size=1, num_workers=2, shuffle_buffer=2, augment=NO_AUG)
    loader, ds = train_loader(shards, cfg, seed=3, rank=0, world=1)
    runs, pids = [], []
    for epoch in (0, 1, 0):
        ds.set_epoch(epoch)
        runs.append([k for b in loader for k in b["key"]])
        pids.append([w.pid for w in loader._iterator._workers])
    assert pids[0] == pids[1] == pids[2]              # the same worker processes every epoch
    assert runs[0] == runs[2] and runs[0] != runs[1]  # and set_epoch reached them: replay, reshuffle
    fresh, fresh_ds = train_loader(shards, cfg, seed=3, rank=0, world=1)
    fresh_ds.set_epoch(1)
    assert [k for b in fresh for k in b["key"]] == runs[1]  # epoch 1 alone equals epoch 1 after epoch 0


def test_min_frames_drops_short_clips(shards):
    # the GRID clips have 75 frames: min_frames above that leaves nothing, at or below keeps all 6
    assert TrainWindows(shards, LC(min_frames=75)).total == 6
    with pytest.raises(ValueError, match="min_frames 76"):
        TrainWindows(shards, LC(min_frames=76))
    assert len(list(eval_windows(shards, LC(min_frames=76)))) == 0
