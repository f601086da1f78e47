"""Progress where it is shown: per-video stages report every finished video through luigi's progress channel
(what luigid's task page shows), training reports epochs, and logs hold no progress-bar lines."""
from __future__ import annotations

import luigi
import luigi.interface
import luigi.scheduler
import luigi.worker
import pytest

from tal_pipeline.stages.parallel import run_per_video


def _square_or_fail(video: str, store_path: str) -> None:
    if video == "bad":
        raise ValueError("unreadable")


@pytest.mark.parametrize("scheduler", ["synchronous", "threads", "inproc"])
def test_run_per_video_reports_every_finished_video(scheduler):
    videos = ["a", "bad", "c", "d", "e"]
    calls = []

    def run(address):
        return run_per_video(_square_or_fail, videos, scheduler=address, num_workers=2, store_path="unused",
                             on_progress=lambda *args: calls.append(args))

    if scheduler == "inproc":
        from distributed import LocalCluster

        with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
            result = run(cluster.scheduler_address)
    else:
        result = run(scheduler)
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5]  # one call per video, in the order they finished
    assert all(total == 5 for _, _, total in calls)
    assert calls[-1][1] == 1 and [c[1] for c in calls] == sorted(c[1] for c in calls)  # failures only grow
    assert result.done == ["a", "c", "d", "e"] and list(result.failures) == ["bad"]  # input order kept


class _Recorder(luigi.scheduler.Scheduler):
    """luigi's own scheduler, keeping every progress value it is sent (luigid shows only the last)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.progress: list[int] = []

    def set_task_progress_percentage(self, task_id, progress_percentage):
        self.progress.append(progress_percentage)
        super().set_task_progress_percentage(task_id, progress_percentage)


class _Factory:
    def __init__(self, scheduler):
        self.scheduler = scheduler

    def create_local_scheduler(self):
        return self.scheduler

    def create_remote_scheduler(self, url):  # pragma: no cover - the test runs locally
        raise AssertionError("no remote scheduler in this test")

    def create_worker(self, scheduler, worker_processes, assistant=False):
        return luigi.worker.Worker(scheduler=scheduler, worker_processes=worker_processes, assistant=assistant)


@pytest.fixture
def dataset_config(tiny_synthetic, tmp_path):
    """[dataset] and [paths] pointing at the tiny synthetic dataset, for an in-process luigi run (then removed)."""
    import pipeline  # noqa: F401 - importing it re-reads luigi's files (shipped defaults first), so set after it

    parser = luigi.configuration.get_config()
    values = {("dataset", "videos"): str(tiny_synthetic),
              ("dataset", "annotations"): str(tiny_synthetic / "annotations.json"),
              ("paths", "workdir"): str(tmp_path / "w"), ("SampleFrames", "size"): "32"}
    old = {key: parser.get(*key, raw=True) if parser.has_option(*key) else None for key in values}
    for (section, option), value in values.items():
        parser.set(section, option, value)
    yield
    for (section, option), value in old.items():
        if value is None:
            parser.remove_option(section, option)
        else:
            parser.set(section, option, value)


def test_per_video_stage_reports_progress_to_the_luigi_scheduler(dataset_config):
    from pipeline.data_tasks import SampleFrames

    scheduler = _Recorder()
    task = SampleFrames()
    ok = luigi.interface.build([task], worker_scheduler_factory=_Factory(scheduler), workers=1,
                               log_level="WARNING")
    assert ok
    assert scheduler.progress == [25, 50, 75, 100]  # 4 videos, one value each
    assert scheduler.get_task_status_message(task.task_id)["statusMessage"] == "4/4 videos"
