import json

import pandas as pd
import pytest

from tal_pipeline.storage.annotations import load_annotations, load_labels


def test_three_thumos14_sources_agree(shared_data):
    t = shared_data / "thumos14"
    sources = {
        "anet": load_annotations(t / "thumos14_anet_style.json", beyond_duration="keep"),
        "actionformer": load_annotations(t / "actionformer_format/thumos14.json", beyond_duration="keep"),
        "gtad": load_annotations(t / "gtad", beyond_duration="keep"),
    }
    keyed = {}
    for name, ann in sources.items():
        actions = ann.actions
        assert len(actions) == 6365, name
        keyed[name] = set(zip(actions["video"], actions["label"], actions["start"].round(3), actions["end"].round(3)))
        assert len(ann.labels) == 20 and "Ambiguous" not in ann.labels
    assert keyed["anet"] == keyed["actionformer"] == keyed["gtad"]
    # Subsets compare case-insensitively: ActionFormer says "Test", the others "test".
    assert len(sources["actionformer"].subset("test").actions) == 3358
    assert len(sources["gtad"].subset("TEST").actions) == 3358
    assert len(sources["anet"].subset("Validation").actions) == 3007
    # Ambiguous is kept apart, never a class.
    assert sources["anet"].instances["ambiguous"].sum() == 185
    assert (sources["gtad"].instances.loc[sources["gtad"].instances["ambiguous"], "label"] == "Ambiguous").all()


def test_segments_past_the_end_are_dropped_with_a_warning(shared_data):
    t = shared_data / "thumos14"
    ann = load_annotations(t / "thumos14_anet_style.json")
    assert len(ann.actions) == 6335
    assert any("video_test_0000270" in w and "30 segment" in w for w in ann.warnings)
    gtad = load_annotations(t / "gtad", video_info=t / "afsd")
    assert len(gtad.actions) == 6335
    assert gtad.duration("video_validation_0000051") == pytest.approx(5091 / 30)


def test_cliffdiving_is_also_diving(shared_data):
    ann = load_annotations(shared_data / "thumos14" / "thumos14_anet_style.json")
    a = ann.actions
    cliff = a[a["label"] == "CliffDiving"][["video", "start", "end"]]
    diving = a[a["label"] == "Diving"][["video", "start", "end"]]
    assert len(cliff.merge(diving)) == len(cliff) == 360


def test_class_index_file(shared_data):
    labels = load_labels(shared_data / "thumos14" / "afsd" / "Class_Index_Detection.txt")
    assert labels[0] == "BaseballPitch" and len(labels) == 20


def _write(tmp_path, database, name="ann.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"database": database}))
    return path


def _video(annotations, duration=10.0, subset="train"):
    return {"subset": subset, "duration": duration, "fps": 25, "annotations": annotations}


def test_clip_zero_length_and_duplicates(tmp_path):
    path = _write(tmp_path, {
        "v1": _video([{"segment": [1, 3], "label": "A"}, {"segment": [1, 3], "label": "A"},
                      {"segment": [4, 4], "label": "A"}, {"segment": [8, 12], "label": "B"},
                      {"segment": [11, 13], "label": "B"}]),
    })
    ann = load_annotations(path)
    rows = ann.actions[["label", "start", "end"]].values.tolist()
    assert rows == [["A", 1.0, 3.0], ["B", 8.0, 10.0]]
    text = " ".join(ann.warnings)
    assert "zero-length" in text and "duplicate" in text and "clipped 1" in text and "start after" in text


def test_unknown_label_names_the_video(tmp_path):
    path = _write(tmp_path, {"v1": _video([{"segment": [1, 3], "label": "Jump"}])})
    with pytest.raises(ValueError, match=r"v1.*unknown label 'Jump'"):
        load_annotations(path, labels=["Run", "Swim"])


@pytest.mark.parametrize("bad_id", ["../etc", "a/b", "has space", ".."])
def test_unsafe_video_ids_are_refused(tmp_path, bad_id):
    path = _write(tmp_path, {bad_id: _video([])})
    with pytest.raises(ValueError, match="not file-name safe"):
        load_annotations(path)


@pytest.mark.parametrize("content, message", [
    ("", "not valid JSON"),
    ("{}", "'database'"),
    ('{"database": {}}', "no video"),
    ('{"database": {"v1": {"subset": "t", "annotations": [{"segment": [5, 2], "label": "A"}]}}}', "ends before"),
    ('{"database": {"v1": {"subset": "t", "annotations": [{"segment": ["x", 2], "label": "A"}]}}}', "not a number"),
    ('{"database": {"v1": {"subset": "t", "annotations": [{"label": "A"}]}}}', "malformed"),
])
def test_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_annotations(path)


def test_missing_file_and_unknown_subset(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_annotations(tmp_path / "nope.json")
    ann = load_annotations(_write(tmp_path, {"v1": _video([])}))
    with pytest.raises(ValueError, match="subset 'test'"):
        ann.subset("test")


def test_gtad_csv_single_file(tmp_path):
    csv = tmp_path / "test_Annotation.csv"
    pd.DataFrame({"video": ["v1", "v1"], "type": ["A", "Ambiguous"], "type_idx": [1, 0],
                  "start": [1.0, 2.0], "end": [2.0, 3.0],
                  "startFrame": [30, 60], "endFrame": [60, 90]}).to_csv(csv, index=False)
    ann = load_annotations(csv)
    assert ann.videos["subset"].tolist() == ["test"]
    assert ann.labels == ["A"] and ann.instances["ambiguous"].tolist() == [False, True]
