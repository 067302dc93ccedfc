"""`kohaku-prep status`: one run in cumulative steps, read from the run folder and the trainer's logs."""
import datetime
import json
import os
import time

from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from test_chain import start

from kohaku_prep.train import status


def write_losses(log_dir, losses):
    """A TensorBoard log as the trainer writes it: one folder per launch, loss/current per step."""
    log_dir.mkdir(parents=True)
    writer = EventFileWriter(str(log_dir))
    for step, loss in losses:
        summary = Summary(value=[Summary.Value(tag="loss/current", simple_value=loss)])
        writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))
    writer.close()


def test_status_of_a_running_run(sample_dataset, tmp_path):
    p, rp, paths = start(sample_dataset, tmp_path / "run")
    first, second = rp.parts.parts[:2]
    paths.part(0).root.mkdir(parents=True, exist_ok=True)
    paths.part(0).done.write_text(json.dumps({"end_step": first.end_step, "wall_seconds": 3600.0 * first.steps / 100}))
    write_losses(paths.part(0).logging_dir / "20261206000000", [(1, 0.5), (2, 0.25)])
    write_losses(paths.part(0).logging_dir / "20261206010000", [(1, 0.4), (first.steps, 0.3)])  # a retry: newest
    write_losses(paths.part(1).logging_dir / "20261206020000", [(1, 0.2), (2, 0.1)])
    started = datetime.datetime(2026, 12, 6, 12, 0, tzinfo=datetime.timezone.utc)
    paths.part(1).attempt.write_text(json.dumps({"attempt": 1, "pid": os.getpid(), "started": started.isoformat()}))
    lines = status.status_lines(paths.root, 3, now=started + datetime.timedelta(minutes=30))
    text = "\n".join(lines)
    total = rp.parts.steps
    assert "part       2 of 3, running (attempt 1, 0 h 30 min so far)" in text
    assert f"step       {first.end_step:,} of {total:,} optimizer steps" in text
    assert "speed      36.0 s per optimizer step over finished parts, start-up included" in text
    assert (f"losses     (cumulative step: loss, the mean of its micro-batches) {first.end_step:,}: 0.3000, "
            f"{first.end_step + 1:,}: 0.2000, {first.end_step + 2:,}: 0.1000") in text
    # the dashboard from the same logs: a retried part's older launch is replaced from its first step on
    written = status.write_dashboard(paths.root)
    assert [f.name for f in written] == ["dashboard.png", "dashboard.html"]
    assert written[0].read_bytes().startswith(b"\x89PNG") and "http" not in written[1].read_text()
    assert f"for {total - first.end_step:,} steps in 2 launch(es)" in text


def test_status_of_a_folder_that_is_no_run(tmp_path):
    import pytest

    from kohaku_prep.errors import PrepError
    with pytest.raises(PrepError, match="not a run folder of kohaku-prep"):
        status.status_lines(tmp_path)
