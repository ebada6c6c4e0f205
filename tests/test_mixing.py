"""Batches are as mixed as uniformly random ones although the shards hold each speaker's clips together
(the crop stage writes them in id order): a synthetic corpus of tiny clips, the real loader."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_mixing import batch_mixing, expected_distinct, loader_config, write_corpus  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # 50 speakers x 2 videos x 10 clips in shards of 100: 5 speakers per shard
    return write_corpus(tmp_path_factory.mktemp("mixing"), speakers=50, videos=2, segments=10, shard_size=100)


def test_expected_distinct_matches_a_simulation():
    gen = torch.Generator().manual_seed(0)
    groups = torch.arange(60).repeat_interleave(10)
    sim = sum(len(set(groups[torch.randperm(600, generator=gen)[:16]].tolist())) for _ in range(4000)) / 4000
    assert abs(expected_distinct([10] * 60, 16) - sim) < 0.05


def test_batches_hold_as_many_speakers_and_videos_as_uniform_sampling(corpus):
    batch = 16
    got = batch_mixing(corpus, loader_config(batch, workers=0), epochs=2, world=2)  # 2 readers
    speakers = expected_distinct([20] * 50, batch)    # 13.9
    videos = expected_distinct([10] * 100, batch)     # 14.9
    print(f"\ndistinct per batch of {batch}: speakers {got['speakers']:.2f} (uniform {speakers:.2f}), "
          f"videos {got['videos']:.2f} (uniform {videos:.2f}) over {got['batches']} batches")
    assert got["batches"] == 2 * 2 * (1000 // (2 * batch))
    assert got["speakers"] >= 0.9 * speakers
    assert got["videos"] >= 0.9 * videos
