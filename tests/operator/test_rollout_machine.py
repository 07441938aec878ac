"""The rollout state machine on its own: the table is total, and each rule the issue asks for holds."""
import pytest

from adminapi_operator.rollout import TRANSITIONS, Event, Outcome, Step, attempt_id, decide, first_step

ALL = [(step, event) for step in Step for event in Event]


@pytest.mark.parametrize("step, event", ALL)
def test_every_step_has_an_answer_for_every_event(step, event):
    assert isinstance(decide(step, event), (Step, Outcome))
    assert isinstance(decide(step, event, restore_database=True), (Step, Outcome))


def test_every_step_is_reachable_and_every_path_ends():
    reachable, frontier = set(), {first_step(True), first_step(False)}
    while frontier:
        step = frontier.pop()
        reachable.add(step)
        for event in Event:
            for restore in (False, True):
                nxt = decide(step, event, restore)
                if isinstance(nxt, Step) and nxt not in reachable:
                    frontier.add(nxt)
    assert reachable == set(Step)
    ends = {decide(s, e, r) for s in Step for e in Event for r in (False, True)} - set(Step)
    assert ends == set(Outcome)


@pytest.mark.parametrize("step", list(Step))
def test_progress_events_that_change_nothing_stay(step):
    assert decide(step, Event.RUNNING) is step


def test_the_happy_path():
    path, step = [], first_step(backup_enabled=True)
    while isinstance(step, Step):
        path.append(step)
        step = decide(step, Event.DONE)
    assert path == [Step.BACKING_UP, Step.MIGRATING, Step.ROLLING_OUT, Step.VERIFYING] and step is Outcome.SUCCEEDED
    assert first_step(backup_enabled=False) is Step.MIGRATING


@pytest.mark.parametrize("step, outcome", [(Step.BACKING_UP, Outcome.BACKUP_FAILED),
                                           (Step.MIGRATING, Outcome.MIGRATION_FAILED)])
def test_failures_before_any_pod_changes_roll_nothing_out(step, outcome):
    assert decide(step, Event.FAILED) is outcome


def test_a_failed_gate_rolls_back_restoring_only_when_asked():
    assert decide(Step.VERIFYING, Event.FAILED) is Step.ROLLING_BACK
    assert decide(Step.VERIFYING, Event.FAILED, restore_database=True) is Step.RESTORING_DATABASE
    assert decide(Step.RESTORING_DATABASE, Event.DONE) is Step.ROLLING_BACK
    assert decide(Step.ROLLING_BACK, Event.DONE) is Outcome.ROLLED_BACK


@pytest.mark.parametrize("event", [Event.SUPERSEDED, Event.REVERTED, Event.RETRY])
@pytest.mark.parametrize("step", [Step.MIGRATING, Step.RESTORING_DATABASE, Step.RESTORE_FAILED, Step.ROLLING_BACK])
def test_what_writes_to_the_database_or_holds_pods_down_is_finished_first(step, event):
    """Issue 9: a revert or a spec change during RestoringDatabase scaled the pods back up mid-restore."""
    if step is Step.RESTORE_FAILED and event is Event.RETRY:
        assert decide(step, event) is Step.RESTORING_DATABASE  # a retry restores again
    else:
        assert decide(step, event) is step


@pytest.mark.parametrize("step", [Step.BACKING_UP, Step.ROLLING_OUT, Step.VERIFYING])
def test_supersede_and_revert_end_the_attempt_where_nothing_must_finish(step):
    assert decide(step, Event.SUPERSEDED) is Outcome.SUPERSEDED
    assert decide(step, Event.REVERTED) is Outcome.CANCELLED


def test_a_failed_restore_keeps_the_pods_down_until_a_human_decides():
    assert decide(Step.RESTORING_DATABASE, Event.FAILED) is Step.RESTORE_FAILED
    assert decide(Step.RESTORE_FAILED, Event.RUNNING) is Step.RESTORE_FAILED
    assert decide(Step.RESTORE_FAILED, Event.WAIVED) is Step.ROLLING_BACK


def test_attempt_ids_differ_per_attempt_and_fit_a_label():
    assert attempt_id("0123456789abcdef", 1) != attempt_id("0123456789abcdef", 2)
    assert len(attempt_id("0123456789abcdef", 10**6)) <= 63


def test_the_table_lists_every_step():
    assert set(TRANSITIONS) == set(Step)
