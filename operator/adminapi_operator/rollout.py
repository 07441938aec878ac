"""The rollout of an AdminApi as a state machine: typed steps, the table of allowed transitions, one decision.

A rollout *attempt* is one try at one new pod template, from the last good one. Its id is the template hash
plus an attempt counter that every new attempt (a spec change, a retry) increments; it is in the name and
labels of every Job it runs and in its backup key, so a Job is trusted only when it belongs to this attempt.

    BackingUp ─done─► Migrating ─done─► RollingOut ─done─► Verifying ─done─► (Succeeded)
        │failed           │failed                              │failed: not available in time, unhealthy, or a pod cannot be configured
        ▼                 ▼                                    ▼
  (BackupFailed)   (MigrationFailed)    ┌─ with rollback.restoreDatabase ─┴─ without ─┐
                                        ▼                                             ▼
                                 RestoringDatabase ─done───────────────────────► RollingBack ─done─► (RolledBack)
                                   │failed   ▲ retry                                  ▲
                                   ▼         │                                        │
                                 RestoreFailed ─── waived (restoreDatabase: false) ───┘

Spec changes and retries are events too, defined for every step (the table below): a new template
supersedes the attempt, the last good template again cancels it, but a step that writes to the database
(Migrating, RestoringDatabase) or has pods down for it (RestoreFailed) is finished first; RollingBack
always finishes. Every attempt ends in one of the Outcomes, recorded in status.history.
"""
from __future__ import annotations

import enum


class Step(str, enum.Enum):
    BACKING_UP = "BackingUp"  # the last good version (image and settings) dumps the database
    MIGRATING = "Migrating"  # the new version's `admin-api migrate` runs as a Job, before any pod changes
    ROLLING_OUT = "RollingOut"  # the Deployment gets the new template
    VERIFYING = "Verifying"  # the gate: every new pod ready and healthy within rollout.timeoutSeconds
    # (a pod the kubelet cannot configure, a missing Secret say, fails it after a short grace: reconcile.py)
    RESTORING_DATABASE = "RestoringDatabase"  # every pod gone (listed), then the attempt's backup restored
    RESTORE_FAILED = "RestoreFailed"  # the restore failed: pods stay down until a retry or a waiver
    ROLLING_BACK = "RollingBack"  # the last good template goes back into the Deployment


class Outcome(str, enum.Enum):
    SUCCEEDED = "Succeeded"
    BACKUP_FAILED = "BackupFailed"
    MIGRATION_FAILED = "MigrationFailed"
    ROLLED_BACK = "RolledBack"
    SUPERSEDED = "Superseded"
    CANCELLED = "Cancelled"


class Event(str, enum.Enum):
    # What the step's own work shows:
    RUNNING = "Running"
    DONE = "Done"
    FAILED = "Failed"
    # What the spec or the user asks:
    SUPERSEDED = "Superseded"  # the spec asks for yet another template
    REVERTED = "Reverted"  # the spec asks for the last good template again
    RETRY = "Retry"  # the aistreams.io/retry-rollout annotation changed
    WAIVED = "Waived"  # spec.rollback.restoreDatabase turned off


S, O, E = Step, Outcome, Event
_STAY = (E.RUNNING, E.RETRY, E.WAIVED)  # in most steps these change nothing

TRANSITIONS: dict[Step, dict[Event, Step | Outcome]] = {
    S.BACKING_UP: {E.DONE: S.MIGRATING, E.FAILED: O.BACKUP_FAILED,
                   # A backup changes nothing: drop it (its Job finishes on its own).
                   E.SUPERSEDED: O.SUPERSEDED, E.REVERTED: O.CANCELLED},
    S.MIGRATING: {E.DONE: S.ROLLING_OUT, E.FAILED: O.MIGRATION_FAILED,
                  # The migration commits or not: let it end, then the next step meets the spec change.
                  E.SUPERSEDED: S.MIGRATING, E.REVERTED: S.MIGRATING},
    S.ROLLING_OUT: {E.DONE: S.VERIFYING, E.FAILED: S.ROLLING_BACK,
                    E.SUPERSEDED: O.SUPERSEDED, E.REVERTED: O.CANCELLED},
    S.VERIFYING: {E.DONE: O.SUCCEEDED, E.FAILED: S.ROLLING_BACK,
                  # The next attempt (or, reverted, the plain reconcile) replaces the template.
                  E.SUPERSEDED: O.SUPERSEDED, E.REVERTED: O.CANCELLED},
    # Once the database goes back in time, nothing else runs until it is back (or a human decides).
    S.RESTORING_DATABASE: {E.DONE: S.ROLLING_BACK, E.FAILED: S.RESTORE_FAILED,
                           E.SUPERSEDED: S.RESTORING_DATABASE, E.REVERTED: S.RESTORING_DATABASE},
    S.RESTORE_FAILED: {E.DONE: S.RESTORE_FAILED, E.FAILED: S.RESTORE_FAILED,
                       E.SUPERSEDED: S.RESTORE_FAILED, E.REVERTED: S.RESTORE_FAILED,
                       E.RETRY: S.RESTORING_DATABASE, E.WAIVED: S.ROLLING_BACK},
    S.ROLLING_BACK: {E.DONE: O.ROLLED_BACK, E.FAILED: S.ROLLING_BACK,
                     E.SUPERSEDED: S.ROLLING_BACK, E.REVERTED: S.ROLLING_BACK},
}
for _step, _row in TRANSITIONS.items():
    for _event in _STAY:
        _row.setdefault(_event, _step)


def decide(step: Step, event: Event, restore_database: bool = False) -> Step | Outcome:
    """The next step (or the outcome that ends the attempt). The only guard: a failed rollout restores the
    attempt's backup first when rollback.restoreDatabase asks for it."""
    nxt = TRANSITIONS[step][event]
    if nxt is S.ROLLING_BACK and step in (S.ROLLING_OUT, S.VERIFYING) and restore_database:
        return S.RESTORING_DATABASE
    return nxt


def first_step(backup_enabled: bool) -> Step:
    return S.BACKING_UP if backup_enabled else S.MIGRATING


def attempt_id(template_hash: str, number: int) -> str:
    """Short enough for every Job name and label; unique per attempt."""
    return f"{template_hash[:10]}-{number}"
