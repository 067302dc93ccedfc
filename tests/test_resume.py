import pytest

from helpers import make_state
from kohaku_prep.errors import PrepError
from kohaku_prep.resume import check_continuation, find_state, resume_args, saved_states


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


@pytest.mark.parametrize("train_state", ['{"current_epoch": 0, "current_st', None])
def test_latest_skips_a_newer_state_whose_train_state_is_cut_off(tmp_path, train_state):
    complete = make_state(tmp_path, "eps-step00002000-state", 2000)
    newer = make_state(tmp_path, "eps-step00004000-state", 4000)
    if train_state is None:
        (newer / "train_state.json").unlink()
    else:
        (newer / "train_state.json").write_text(train_state)
    assert find_state("latest", tmp_path, "eps").path == complete
    with pytest.raises(PrepError, match="not a complete saved state"):
        find_state(str(newer), tmp_path, "eps")


def test_resume_flags_where_the_trainer_is_right(tmp_path):
    folder = make_state(tmp_path, "eps-step00000002-state", 2)
    state = find_state("latest", tmp_path, "eps")
    assert resume_args(state, accumulation=1, processes=4, steps_per_epoch=100) == (
        ["--resume", str(folder), "--skip_until_initial_step"], [])


def test_forced_single_process_resume_warns_of_the_redrawn_order(tmp_path):
    folder = make_state(tmp_path, "eps-step00000002-state", 2)
    args, warnings = resume_args(find_state("latest", tmp_path, "eps"), 1, 1, 100, force=True)
    assert args == ["--resume", str(folder), "--skip_until_initial_step"]
    assert warnings == ["a single-process run resumes at step 2 with the epoch's order drawn anew: the 98 "
                        "optimizer steps left train batches of a new order, so some images of this epoch "
                        "repeat and others are not seen"]
    for accumulation, per_epoch in ((2, 100), (1, 2)):  # wrong step counts are never forced through
        with pytest.raises(PrepError):
            resume_args(find_state("latest", tmp_path, "eps"), accumulation, 1, per_epoch, force=True)


@pytest.mark.parametrize("accumulation, processes, per_epoch, why", [
    (16, 4, 20_354, "gradient accumulation 16"),  # Epsilon itself
    (2, 4, 100, "issue #2407"),
    (1, 1, 100, "single-process run resumes .* drawn anew.*--force-resume resumes anyway"),
    (1, 4, 2, "past the first epoch"),
])
def test_resume_refused_where_the_trainer_goes_wrong(tmp_path, accumulation, processes, per_epoch, why):
    make_state(tmp_path, "eps-step00000002-state", 2)
    with pytest.raises(PrepError, match=why):
        resume_args(find_state("latest", tmp_path, "eps"), accumulation, processes, per_epoch)


RECORD = {"preset_sha256": "p" * 64, "dataset_manifest_sha256": "m" * 64, "sd_scripts_commit": "c" * 40,
          "bitsandbytes": "0.43.1"}


def test_an_unchanged_run_resumes_without_warnings():
    assert check_continuation(RECORD, dict(RECORD), force=False) == []


@pytest.mark.parametrize("key, new", [("preset_sha256", "q" * 64), ("dataset_manifest_sha256", "n" * 64),
                                      ("sd_scripts_commit", "d" * 40), ("bitsandbytes", "0.45.0")],
                         ids=["preset", "manifest", "sd-scripts commit", "bitsandbytes"])
def test_each_change_since_the_start_is_refused_and_named(key, new):
    current = RECORD | {key: new}
    with pytest.raises(PrepError) as refused:
        check_continuation(RECORD, current, force=False)
    assert str(refused.value) == f"cannot resume: {key} changed: {RECORD[key]} -> {new} (--force-resume resumes anyway)"
    assert check_continuation(RECORD, current, force=True) == [f"{key} changed: {RECORD[key]} -> {new}"]


def test_every_change_is_listed_at_once():
    current = {key: "x" for key in RECORD}
    with pytest.raises(PrepError) as refused:
        check_continuation(RECORD, current, force=False)
    assert str(refused.value).count(" changed: ") == 4 and "\n" not in str(refused.value)


def test_a_run_without_a_record_is_refused_with_the_reason_unless_forced():
    with pytest.raises(PrepError, match="no readable run.json in the run folder records what the run was started from"):
        check_continuation(None, RECORD, force=False)
    assert len(check_continuation(None, RECORD, force=True)) == 1
    older = {k: v for k, v in RECORD.items() if k != "bitsandbytes"}  # a record that lacks a value
    with pytest.raises(PrepError, match="bitsandbytes changed: unrecorded -> 0.43.1"):
        check_continuation(older, RECORD, force=False)
