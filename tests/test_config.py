"""Configuration sections keep their luigi.cfg names and command-line flags whatever their classes are called:
--dataset-videos and a [dask] section in a luigi.cfg reach the code that reads them."""
from __future__ import annotations

import luigi
import pytest
from luigi.cmdline_parser import CmdlineParser
from luigi.configuration import LuigiConfigParser
from luigi.task_register import Register

import pipeline  # noqa: F401 - registers the tasks and the detectors' sections
from pipeline import config, dataset
from pipeline.data_tasks import SampleFrames


def test_sections_are_registered_under_their_luigi_cfg_names():
    for name, cls in (("dataset", config.DatasetConfig), ("dask", config.DaskConfig), ("paths", config.PathsConfig),
                      ("synthetic", config.SyntheticConfig), ("afsd", config.DETECTOR_SETTINGS["afsd"]),
                      ("actionformer", config.DETECTOR_SETTINGS["actionformer"])):
        assert Register.get_task_cls(name) is cls
    assert not {"DatasetConfig", "DaskConfig", "PathsConfig"} & set(Register.task_names())
    sections = {row["section"] for row in config.resolved_config()}  # what `tal-pipeline config` prints
    assert {"dataset", "dask", "paths", "synthetic", "afsd", "actionformer"} <= sections
    assert not {"DatasetConfig", "DaskConfig", "_Section", "_DetectorSettings"} & sections


def test_dataset_flags_reach_the_dataset(tmp_path):
    videos, annotations = tmp_path / "videos", tmp_path / "annotations.json"
    args = ["SampleFrames", "--dataset-videos", str(videos), "--dataset-annotations", str(annotations),
            "--dataset-test-subset", "validation"]
    with CmdlineParser.global_instance(args):
        spec = dataset.current()
    assert (spec.videos, spec.annotations, spec.test_subset, spec.synthetic) == (str(videos), str(annotations),
                                                                                "validation", False)


@pytest.fixture
def config_file(tmp_path):
    """A luigi.cfg read after every other (as $LUIGI_CONFIG_PATH is), removed again after the test."""
    file = tmp_path / "luigi.cfg"
    LuigiConfigParser.add_config_path(str(file))  # (re)reads every file, this one last
    yield file
    LuigiConfigParser._config_paths.remove(str(file))
    LuigiConfigParser.reload()


def test_dask_section_in_a_config_file_reaches_the_stages(config_file):
    config_file.write_text("[dask]\nscheduler = synchronous\nworkers = 3\n")
    LuigiConfigParser.reload()
    assert luigi.configuration.get_config().get("dask", "scheduler") == "synchronous"
    assert SampleFrames().dask_scheduler() == ("synchronous", 3)
    with CmdlineParser.global_instance(["SampleFrames", "--dask-scheduler", "processes"]):  # the flag wins
        assert SampleFrames().dask_scheduler() == ("processes", 3)
