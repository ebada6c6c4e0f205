"""shards inspect and status: the table in words, --json, the contact sheet, failures grouped by reason."""
from __future__ import annotations

import argparse
import json

import pytest
from pipeline_project import copy_project, local_client, project_env


@pytest.fixture(scope="module")
def packed(aligned_project, tmp_path_factory):
    from pipeline import stages
    from preprocess.records import FAILED, SKIPPED, StatusRecord, read_record, write_record

    root = copy_project(aligned_project, tmp_path_factory.mktemp("inspect") / "project")
    with project_env(root), local_client() as client:
        import pandas as pd

        vids = sorted(pd.read_parquet(root / "data_manifests" / "cremadt.parquet").video_id)
        # besides the faceless clip (failed at track), one video failed at align (and so skipped
        # downstream), with a reason that carries numbers (and the fingerprint of today's params: not stale)
        fingerprint = read_record("align", "cremadt", vids[0]).fingerprint
        write_record(StatusRecord("cremadt", vids[0], "align", FAILED, "no usable landmarks in any of the 56 "
                                  "tracked frames (dlib)", fingerprint))
        for corpus in ("gridt", "cremadt"):
            stages.run("crop", corpus, client)
        assert any(r.status == SKIPPED for r in stages.run("crop", "cremadt", client))
    return root


def parse(*argv):
    from pipeline import shard_inspect

    return shard_inspect.add_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_table_in_words_and_json(packed, capsys):
    from pipeline import shard_inspect

    with project_env(packed):
        assert shard_inspect.main(parse()) == 0
        text = capsys.readouterr().out
        assert "== gridt" in text and "== cremadt" in text and "train" in text and "test" in text
        assert "failed  at align" in text and "no usable landmarks" in text
        assert "failed  at track" in text and "no face found" in text
        assert shard_inspect.main(parse("cremadt", "--json")) == 0
        result = json.loads(capsys.readouterr().out)
    test = result["cremadt"]["splits"]["test"]
    assert test["samples"] == 3 and test["labels"] == {"fake": 3} and test["methods"] == {"Emotion": 3}
    assert 0 < test["hours"] < 0.01 and test["interpolated_fraction"] == 0.0
    track, align = result["cremadt"]["failures"]  # in stage order
    assert (track["stage"], track["reason"], track["videos"]) == ("track", "no face found", 1)
    assert align["stage"] == "align" and align["videos"] == 1  # each counted once, not again downstream
    assert result["cremadt"]["videos"] == 5


def test_contact_sheet_png(packed, tmp_path, capsys):
    from pipeline import shard_inspect

    with project_env(packed):
        import pandas as pd

        key = pd.read_parquet(packed / "data" / "shards" / "gridt" / "manifest.parquet").key.iloc[0]
        png = tmp_path / "sheet.png"
        assert shard_inspect.main(parse("--key", key, "--png", str(png), "--json")) == 0
        info = json.loads(capsys.readouterr().out)
    assert info["key"] == key and png.stat().st_size > 20_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with project_env(packed), pytest.raises(KeyError, match="no sample"):
        shard_inspect.main(parse("--key", "gridt__nope__0000", "--png", str(png)))


def test_status_counts_per_stage(packed):
    from pipeline import status

    with project_env(packed):
        table = status.status_table().set_index(["corpus", "stage"])
    assert table.loc[("gridt", "crop"), "ok"] == 6
    assert table.loc[("cremadt", "track"), "failed"] == 1 and table.loc[("cremadt", "align"), "skipped"] == 1
    assert table.loc[("cremadt", "align"), "failed"] == 1 and table.loc[("cremadt", "crop"), "skipped"] == 2
    assert (table.pending == 0).all() and (table.note == "").all()


@pytest.mark.parametrize("change, stale, cremadt_crop", [
    # a crop param only packs (shard sizes): no sample changes, so nothing is stale
    (("maxcount: 4", "maxcount: 5"), set(), (0, 2)),
    # an align param: align and all below; the video failed at align would be redone, so its crop row too
    (("smooth_window: 6", "smooth_window: 5"), {"align", "crop"}, (4, 1)),
])
def test_status_counts_stale_records_as_pending(packed, tmp_path, change, stale, cremadt_crop):
    """A record made with other params than today's is pending ("stale"), never ok; so is everything below it."""
    from pipeline import status

    root = copy_project(packed, tmp_path / "project")
    params = root / "params.yaml"
    assert change[0] in params.read_text()
    params.write_text(params.read_text().replace(*change))
    with project_env(root):
        table = status.status_table().set_index(["corpus", "stage"])
    for stage in ("resample", "track", "align", "crop"):
        row = table.loc[("gridt", stage)]
        if stage in stale:
            assert (row.ok, row.pending) == (0, 6) and row.note.startswith("6 stale"), row.to_dict()
        else:
            assert (row.ok, row.pending, row.note) == (6, 0, ""), row.to_dict()
    assert tuple(table.loc[("cremadt", "crop"), ["pending", "skipped"]]) == cremadt_crop


def test_corpus_preview_is_a_picture_of_the_shards(packed, tmp_path):
    import numpy as np
    from PIL import Image

    from pipeline import shard_inspect

    with project_env(packed):
        drawn = shard_inspect.corpus_preview("gridt", tmp_path / "a.png", n=4)
        shard_inspect.corpus_preview("gridt", tmp_path / "b.png", n=4)
        with pytest.raises(KeyError, match="no shards yet"):
            shard_inspect.corpus_preview("nocorpus", tmp_path / "c.png")
    assert drawn == 4
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()  # same shards, same picture
    pixels = np.asarray(Image.open(tmp_path / "a.png").convert("L"))
    assert pixels.std() > 20  # faces drawn, not a blank canvas
