"""The run dashboard's series, read with TensorBoard's reader from event files written as sd-scripts writes
them: after every micro-batch, the TensorBoard step set to the optimizer step."""
import re

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from kohaku_prep.train import run_logs

ACCUMULATION = 4


def loss_of(step, micro):
    return 0.05 + 0.01 * ((step * 7 + micro * 3) % 11)


def lr_of(step):
    return 1e-4 * min(1.0, (step + 1) / 20)


def write_launch(folder, steps, start_wall, seconds_per_step, tags=("unet",)):
    """Events of one launch into `folder/network_train` (accelerate's tracker folder), wall times
    advancing `seconds_per_step` per optimizer step."""
    writer = EventFileWriter(str(folder / "network_train"))
    wall = start_wall
    for step in steps:
        for micro in range(ACCUMULATION):
            wall += seconds_per_step / ACCUMULATION
            values = {"loss/current": loss_of(step, micro), "loss/average": 0.1,
                      **{f"lr/{t}": lr_of(step) for t in tags}}
            summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)
                                                 for k, v in values.items()])
            writer.add_event(event_pb2.Event(wall_time=wall, step=step, summary=summary))
    writer.close()
    return folder


def test_one_launch(tmp_path):
    log = write_launch(tmp_path / "20260101000000", range(1, 31), 1000.0, 12.0)
    logs = run_logs.read_run_logs([(log, 0)], images_per_step=256)
    assert logs.loss.steps.tolist() == list(range(1, 31)) and logs.last_step == 30
    expected = [np.mean([np.float32(loss_of(s, m)) for m in range(ACCUMULATION)]) for s in range(1, 31)]
    assert logs.loss.values == pytest.approx(expected)
    assert logs.lr["unet"].values == pytest.approx([np.float32(lr_of(s)) for s in range(1, 31)])
    assert logs.seconds_per_step.steps.tolist() == list(range(2, 31))
    assert logs.seconds_per_step.values == pytest.approx([12.0] * 29)
    assert logs.images_per_second is not None and logs.images_per_second.values == pytest.approx([256 / 12.0] * 29)
    assert logs.loss_average.values == pytest.approx([0.1] * 30)
    assert logs.launch_starts == [1]


def test_smoothing_is_tensorboards_debiased_average():
    values = np.array([1.0, 0.0, 0.0, 2.0])
    weight, last, out = 0.6, 0.0, []
    for k, v in enumerate(values, 1):
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight ** k))
    assert run_logs.smoothed(values, 0.6) == pytest.approx(out)
    assert run_logs.smoothed(np.array([3.0]), 0.95) == pytest.approx([3.0])


def test_launches_in_cumulative_steps_later_launch_wins(tmp_path):
    # the first part logged steps 1..40, died, and its successor restarted from the state saved at step 30;
    # the second launch logs its own steps from 1 (offset 30), the third logs cumulative steps (offset 0)
    first = write_launch(tmp_path / "a", range(1, 41), 1000.0, 10.0)
    second = write_launch(tmp_path / "b", range(1, 21), 5000.0, 8.0)
    third = write_launch(tmp_path / "c", range(51, 61), 9000.0, 6.0, tags=("textencoder", "unet"))
    logs = run_logs.read_run_logs([(first, 0), (second, 30), (third, 0)], images_per_step=64)
    assert logs.loss.steps.tolist() == list(range(1, 61))
    assert logs.launch_starts == [1, 31, 51]
    assert logs.loss.values[30] == pytest.approx(np.mean([np.float32(loss_of(1, m)) for m in range(ACCUMULATION)]))
    # no time across launches: step 31's and 51's time between launches are not a step's
    assert 31 not in logs.seconds_per_step.steps and 51 not in logs.seconds_per_step.steps
    by_step = dict(zip(logs.seconds_per_step.steps.tolist(), logs.seconds_per_step.values.tolist(), strict=True))
    assert [by_step[30], by_step[40], by_step[60]] == pytest.approx([10.0, 8.0, 6.0])
    assert np.isnan(logs.lr["textencoder"].values[:50]).all() and not np.isnan(logs.lr["textencoder"].values[50:]).any()


def test_log_folder_given_above_the_event_folders(tmp_path):
    write_launch(tmp_path / "logs" / "20260101000000", range(0, 5), 0.0, 1.0)
    assert run_logs.event_folders(tmp_path / "logs") == [tmp_path / "logs" / "20260101000000" / "network_train"]
    logs = run_logs.read_run_logs([(tmp_path / "logs" / "20260101000000", 0)])
    assert logs.last_step == 4 and logs.images_per_second is None


def test_logging_dir_given_whole_reads_each_launch_apart(tmp_path):
    # the trainer's logging_dir: one timestamped folder per launch, each logging cumulative steps
    write_launch(tmp_path / "logs" / "20260101000000", range(1, 41), 0.0, 10.0)
    write_launch(tmp_path / "logs" / "20260102000000", range(31, 61), 9000.0, 5.0)
    logs = run_logs.read_run_logs([(tmp_path / "logs", 0)])
    assert logs.launch_starts == [1, 31] and logs.loss.steps.tolist() == list(range(1, 61))
    assert logs.loss.values[35] == pytest.approx(np.mean([np.float32(loss_of(36, m)) for m in range(ACCUMULATION)]))
    assert 31 not in logs.seconds_per_step.steps
    by_step = dict(zip(logs.seconds_per_step.steps.tolist(), logs.seconds_per_step.values.tolist(), strict=True))
    assert by_step[30] == pytest.approx(10.0) and by_step[40] == pytest.approx(5.0)  # the later launch's


def test_no_logs_yet(tmp_path):
    (tmp_path / "empty").mkdir()
    logs = run_logs.read_run_logs([(tmp_path / "empty", 0), (tmp_path / "missing", 0)], images_per_step=4)
    assert logs.last_step is None and len(logs.seconds_per_step) == 0 and logs.launch_starts == []
    page = run_logs.dashboard_html(logs, "run")
    assert "No step logged yet." in page


def test_dashboard(tmp_path):
    write_launch(tmp_path / "a", range(1, 201), 0.0, 30.0)
    write_launch(tmp_path / "b", range(150, 301), 9000.0, 25.0)
    logs = run_logs.read_run_logs([(tmp_path / "a", 0), (tmp_path / "b", 0)], images_per_step=256)
    png = run_logs.dashboard_png(logs)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    latest = dict(run_logs.latest_table(logs).rows)
    assert latest["last step"] == 300 and latest["launches read"] == 2
    assert latest["seconds per step (median of the last 50)"] == pytest.approx(25.0)
    assert latest["images per second (median of the last 50)"] == pytest.approx(256 / 25.0)
    page = run_logs.dashboard_html(logs, "epsilon", png)
    assert "At optimizer step 300." in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    rest = re.sub(r'data:image/png;base64,[A-Za-z0-9+/=]+', "", page)
    assert not any(s in rest for s in ("http:", "https:", "//", "<script", "<link"))
