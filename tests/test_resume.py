import pytest
from helpers import make_state

from kohaku_prep.errors import PrepError
from kohaku_prep.train.resume import check_continuation, state_step


def test_a_state_counts_only_when_complete(tmp_path):
    assert state_step(make_state(tmp_path, "eps-state", 400)) == 400
    assert state_step(make_state(tmp_path, "cut-state", 400, complete=False)) is None  # cut off mid-save
    cut = make_state(tmp_path, "half-state", 400)
    (cut / "train_state.json").write_text('{"current_epoch": 0, "current_st')  # cut off mid-write
    assert state_step(cut) is None
    assert state_step(tmp_path / "none") is None


RECORD = {"preset_sha256": "p" * 64, "dataset_manifest_sha256": "m" * 64, "sd_scripts_commit": "c" * 40,
          "bitsandbytes": "0.43.1"}


def test_an_unchanged_run_continues_without_warnings():
    assert check_continuation(RECORD, dict(RECORD), force=False) == []


@pytest.mark.parametrize("key, new", [("preset_sha256", "q" * 64), ("dataset_manifest_sha256", "n" * 64),
                                      ("sd_scripts_commit", "d" * 40), ("bitsandbytes", "0.45.0")],
                         ids=["preset", "manifest", "sd-scripts commit", "bitsandbytes"])
def test_each_change_since_the_start_is_refused_and_named(key, new):
    current = RECORD | {key: new}
    with pytest.raises(PrepError) as refused:
        check_continuation(RECORD, current, force=False)
    assert str(refused.value) == (f"cannot continue the run: {key} changed: {RECORD[key]} -> {new} "
                                  "(--force-resume continues anyway)")
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
