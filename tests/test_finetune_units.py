"""Fine-tuning pieces without shards: optimizer groups and the paper's learning rates, frozen stem/trunk after
real optimizer steps, class balancing plans, metrics against known values and scikit-learn."""
import itertools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from models.detector import Detector, DetectorConfig
from models.presets import TINY_VIDEO
from train.clips import copies, plan_balance
from train.evaluate import group_metrics
from train.finetune import param_groups, set_epoch_lr
from train.finetune_config import FinetuneConfig
from train.metrics import accuracy, auc, choose_threshold, labels01, roc_points

PAPER_RATES = FinetuneConfig(lr_head=0.01, lr_last_layer=0.005)  # paper Sec. 3.3 (params/paper.yaml)


@pytest.mark.parametrize("backend,layers", [("transformer", 3), ("mstcn", 2)])
def test_every_trainable_parameter_in_one_group_with_the_papers_lr(backend, layers):
    torch.manual_seed(0)
    det = Detector(replace(TINY_VIDEO, backend=backend, layers=layers), DetectorConfig(hidden=16))
    det.freeze_frontend()
    groups = param_groups(det, PAPER_RATES)
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen)), "a parameter sits in two groups"
    assert set(seen) == {id(p) for p in det.parameters() if p.requires_grad}
    assert not {id(p) for m in det.frontend() for p in m.parameters()} & set(seen)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    for p in det.head.parameters():
        assert lr_of[id(p)] == 0.01
    for i, params in enumerate(det.backend_layers()):
        want = 0.005 * 0.9 ** (layers - 1 - i)
        assert all(lr_of[id(p)] == pytest.approx(want, rel=1e-12) for p in params), i
    if backend == "transformer":  # projection and positional embeddings: with the first layer
        b = det.encoder.backend
        assert lr_of[id(b.pos)] == lr_of[id(b.proj.weight)] == pytest.approx(0.005 * 0.9 ** (layers - 1))
    opt = torch.optim.AdamW(groups)
    set_epoch_lr(opt, 2, PAPER_RATES)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.81)


def test_frozen_stem_and_trunk_bit_identical_after_training_steps():
    torch.manual_seed(0)
    det = Detector(TINY_VIDEO, DetectorConfig(hidden=16, dropout=0.1))
    det.freeze_frontend()
    frozen = {f"{i}.{k}": v.clone() for i, m in enumerate(det.frontend()) for k, v in m.state_dict().items()}
    assert any("running_mean" in k for k in frozen) and any("num_batches_tracked" in k for k in frozen)
    trainable_before = {k: v.clone() for k, v in det.named_parameters() if v.requires_grad}
    opt = torch.optim.AdamW(param_groups(det, PAPER_RATES))
    det.train()
    for step in range(3):
        x = torch.randn(4, 25, 88, 88) * (1 + step)  # a distribution shift that would move BN statistics
        loss = torch.nn.functional.binary_cross_entropy_with_logits(det(x), torch.tensor([0.0, 1.0, 0.0, 1.0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = {f"{i}.{k}": v for i, m in enumerate(det.frontend()) for k, v in m.state_dict().items()}
    for k, v in frozen.items():
        assert torch.equal(v, after[k]), k
    moved = [k for k, v in det.named_parameters() if v.requires_grad and not torch.equal(v, trainable_before[k])]
    assert any(k.startswith("head.") for k in moved) and any(k.startswith("encoder.backend.") for k in moved)


def entry(path, real=0, fake=0, methods=None):
    labels = {k: v for k, v in (("real", real), ("fake", fake)) if v}
    return {"path": path, "samples": real + fake, "labels": labels, "methods": methods or {}}


def test_balance_plans():
    ft = [entry("a", real=10), entry("b", fake=30, methods={"Deepfakes": 20, "FaceSwap": 10})]
    pre = [entry("p", real=100)]
    none = plan_balance(ft, pre, "none")
    assert none.counts["per_epoch_real"] == 10 and none.counts["per_epoch_fake"] == 30 and len(none.sources) == 2
    over = plan_balance(ft, pre, "oversample")
    assert over.sources[0].weight("real") == 3.0 and over.sources[1].weight("fake") == 1.0
    paper = plan_balance(ft, pre, "pretrain_reals")
    assert paper.sources[-1].path == "p" and paper.sources[-1].weight("real") == pytest.approx(0.2)
    assert paper.sources[-1].weight("fake") == 0.0
    assert paper.counts["per_epoch_real"] == paper.counts["per_epoch_fake"] == 30
    lomo = plan_balance(ft, pre, "pretrain_reals", exclude_methods=("Deepfakes",))
    assert lomo.counts["finetune_fake"] == 10 and "already match" in lomo.note and len(lomo.sources) == 2
    short = plan_balance(ft, [entry("p", real=5)], "pretrain_reals")
    assert short.sources[-1].weight("real") == 4.0 and "fewer than needed" in short.note
    with pytest.raises(ValueError, match="balance"):
        plan_balance(ft, pre, "smote")
    rng = np.random.default_rng(0)
    draws = [copies(2.25, rng) for _ in range(4000)]
    assert set(draws) == {2, 3} and np.mean(draws) == pytest.approx(2.25, abs=0.03)


def test_auc_matches_known_value_and_scikit_learn():
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, -2.0, 3.0])
    # pairs (fake, real) ranked right: count by hand
    pairs = [(f, r) for f, r in itertools.product(s[y == 1], s[y == 0])]
    by_hand = np.mean([1.0 if f > r else 0.5 if f == r else 0.0 for f, r in pairs])
    assert by_hand == pytest.approx(8 / 9)
    assert auc(y, s) == pytest.approx(by_hand) == pytest.approx(roc_auc_score(y, s))
    assert auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
    assert accuracy(y, s, 0.0) == pytest.approx(4 / 6)  # logit > 0 is fake
    t = choose_threshold(y, s)
    assert accuracy(y, s, t) == max(accuracy(y, s, c) for c in np.linspace(-3, 4, 701))
    pts = roc_points(y, s)
    assert pts[0]["fpr"] == 0 and pts[-1]["tpr"] == 1
    assert labels01(["fake", "real", "fake"]).tolist() == [1, 0, 1]


def test_group_metrics_per_method_against_all_reals():
    df = pd.DataFrame({
        "corpus": ["r", "r", "df", "df", "fs", "fs", "r"],
        "label": ["real", "real", "fake", "fake", "fake", "fake", "real"],
        "method": [None, None, "Deepfakes", "Deepfakes", "FaceSwap", "FaceSwap", None],
        "score": [-1.0, 0.5, 2.0, 1.0, 0.0, -3.0, np.nan],
        "status": ["scored"] * 6 + ["unscored"],
        "reason": [""] * 6 + ["crop skipped: align stage failed: no face found"]})
    m = group_metrics(df, threshold=0.25)
    assert m["videos"] == {"total": 7, "scored": 6}
    assert m["unscored_reasons"] == {"crop skipped: align stage failed: no face found": 1}
    assert m["by_method"]["Deepfakes"]["auc"] == 1.0
    assert m["by_method"]["FaceSwap"]["auc"] == pytest.approx(roc_auc_score([0, 0, 1, 1], [-1, 0.5, 0, -3]))
    assert m["overall"]["auc"] == pytest.approx(roc_auc_score([0, 0, 1, 1, 1, 1], [-1, 0.5, 2, 1, 0, -3]))
    assert m["overall"]["acc_at_val_threshold"] == pytest.approx(accuracy(np.array([0, 0, 1, 1, 1, 1]),
                                                                          np.array([-1, 0.5, 2, 1, 0, -3]), 0.25))
    assert m["by_corpus"]["df"]["auc"] is None and m["by_corpus"]["df"]["n_fake"] == 2


def test_video_score_pools_the_clip_logits_of_all_segments():
    from train.videoscores import pool_videos

    meta = lambda vid, seg, label="fake", method="Seam": {"corpus": "c", "video_id": vid, "segment": seg,  # noqa: E731
                                                         "label": label, "method": method, "split": "test"}
    segments = {"c__b__0001": (meta("b", 1), np.array([3.0], np.float32)),
                "c__b__0000": (meta("b", 0), np.array([1.0, 2.0], np.float32)),
                "c__a__0000": (meta("a", 0, "real", None), np.array([-0.5, 0.25, -1.0], np.float32)),
                "c__z__0000": (meta("z", 0), np.array([], np.float32))}
    a, b, z = pool_videos(segments)
    assert (a.video_id, a.label, a.method, a.n_clips, a.n_segments) == ("a", "real", None, 3, 1)
    assert a.score == pytest.approx(-1.25 / 3)
    assert (b.n_clips, b.n_segments, b.score) == (3, 2, pytest.approx(2.0))  # mean over clips, not segments
    assert z.score is None and z.n_clips == 0
