import json

import pytest

from kohaku_prep.errors import PrepError
from kohaku_prep.resume import find_state, resume_args, saved_states


def make_state(output, name, step, complete=True):
    folder = output / name
    folder.mkdir(parents=True)
    (folder / "train_state.json").write_text(json.dumps({"current_epoch": 0, "current_step": step}))
    (folder / "model.safetensors").write_bytes(b"")
    if complete:
        (folder / "random_states_0.pkl").write_bytes(b"")
    return folder


def test_latest_complete_state_wins_and_cut_off_states_are_ignored(tmp_path):
    make_state(tmp_path, "eps-step00002000-state", 2000)
    newest = make_state(tmp_path, "eps-step00004000-state", 4000)
    make_state(tmp_path, "eps-step00006000-state", 6000, complete=False)  # cut off mid-save
    make_state(tmp_path, "other-step00008000-state", 8000)
    assert [s.step for s in saved_states(tmp_path, "eps")] == [2000, 4000]
    assert find_state("latest", tmp_path, "eps").path == newest
    assert find_state(str(newest), tmp_path, "eps").step == 4000
    with pytest.raises(PrepError, match="not a complete saved state"):
        find_state(str(tmp_path / "eps-step00006000-state"), tmp_path, "eps")
    with pytest.raises(PrepError, match="no complete saved state"):
        find_state("latest", tmp_path / "none", "eps")


def test_resume_flags_where_the_trainer_is_right(tmp_path):
    folder = make_state(tmp_path, "eps-step00000002-state", 2)
    state = find_state("latest", tmp_path, "eps")
    assert resume_args(state, accumulation=1, processes=4, steps_per_epoch=100) == [
        "--resume", str(folder), "--skip_until_initial_step"]


@pytest.mark.parametrize("accumulation, processes, per_epoch, why", [
    (16, 4, 20_354, "gradient accumulation 16"),  # Epsilon itself
    (2, 4, 100, "issue #2407"),
    (1, 1, 100, "single-process"),
    (1, 4, 2, "past the first epoch"),
])
def test_resume_refused_where_the_trainer_goes_wrong(tmp_path, accumulation, processes, per_epoch, why):
    make_state(tmp_path, "eps-step00000002-state", 2)
    with pytest.raises(PrepError, match=why):
        resume_args(find_state("latest", tmp_path, "eps"), accumulation, processes, per_epoch)
