"""What must hold after the chaos run, checked against the simulator's ledger (issue #14).

``check`` takes plain data (``RunData``: the app's rows, the files under the app's storage
prefix with their SHA-256, the simulator's ledger of billed tasks and the workers killed) and
returns the run's figures and every violation found, each naming the task, the HiDream task
and what was seen, so whoever reads the report can find it in the logs. It reads no database
and starts nothing, so its own tests (test_invariants.py) run in the normal suite.

The invariants:

1. Each HiDream task belongs to at most one app task (its ``notify_url`` names the app task;
   no two app tasks hold the same ``remote_task_id``, and a task holds only one of its own).
2. No app task was billed twice (the run has no person retries, and nothing is resent).
3. Every task is final or ``unconfirmed``; an ``unconfirmed`` task is one whose submit reached
   HiDream without an answer reaching the app: its reply was dropped, failed, came after the
   read timeout or was a gateway's 504, or the worker waiting for it was killed (the sweep
   marked it, after a kill while it was in flight). Neither may a task stay ``unconfirmed``
   once its final callback was answered 200, nor be unconfirmed without any submit in the
   ledger unless a worker was killed while it was being sent (nobody can tell whether those
   bytes left).
4. Every sub-task of a succeeded task has exactly one picture, stored, byte-identical (SHA-256)
   to what the simulator served; every stored picture is.
5. Storage holds no file under the app's prefix that no row references.
6. No callback event is left ``received``.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

FINAL = ("succeeded", "partial", "failed")
UNCONFIRMED = "unconfirmed"


@dataclass
class RunData:
    """Everything the checks read, as plain values (times are Unix seconds)."""

    tasks: list[dict]  # id, status, remote_task_id, sub_task_ids, request_sent_at, error_message
    images: list[dict]  # id, task_id, sub_task_id, status, file, sha256 (None: file missing)
    files: dict[str, str]  # storage name under the prefix -> SHA-256
    referenced: set[str]  # storage names any row references
    events: list[dict]  # id, task_id, outcome, error
    ledger: list[dict]  # the simulator's entries (hidream_models/simulator/ledger.py)
    kills: list[dict]  # at, kind ("child" or "parent"), pid, worker
    refused: list[dict] = field(default_factory=list)  # submits answered without a task
    chaos_counts: dict[str, int] = field(default_factory=dict)
    connect_timeout: float = 1.0
    read_timeout: float = 3.0


@dataclass
class Violation:
    rule: str
    task: str | None
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] task {self.task or '-'}: {self.detail}"


@dataclass
class Outcome:
    figures: dict[str, object]
    violations: list[Violation]
    unconfirmed_reasons: Counter = field(default_factory=Counter)
    unconfirmed: list[dict] = field(default_factory=list)  # each task, with its reason


def check(data: RunData) -> Outcome:
    """Every invariant of the module doc over `data`; the figures and the violations."""
    violations: list[Violation] = []
    add = lambda rule, task, detail: violations.append(Violation(rule, task, detail))  # noqa: E731

    tasks = {task["id"]: task for task in data.tasks}
    by_remote = {entry["task_id"]: entry for entry in data.ledger}
    billed: dict[str, list[dict]] = defaultdict(list)
    for entry in data.ledger:
        billed[entry["caller_ref"]].append(entry)
        if entry["caller_ref"] not in tasks:
            add(
                "one app task per HiDream task",
                entry["caller_ref"],
                f"HiDream task {entry['task_id']} was billed for no task of the app",
            )
    duplicates = 0

    # 1. one app task per HiDream task
    holders: dict[str, list[str]] = defaultdict(list)
    for task in data.tasks:
        if task["remote_task_id"]:
            holders[task["remote_task_id"]].append(task["id"])
    for remote, ids in holders.items():
        if len(ids) > 1:
            duplicates += len(ids) - 1
            add("one app task per HiDream task", ", ".join(ids), f"all hold HiDream task {remote}")
        entry = by_remote.get(remote)
        for task_id in ids:
            if entry is None:
                add("one app task per HiDream task", task_id, f"holds {remote}, never billed")
            elif entry["caller_ref"] != task_id:
                add(
                    "one app task per HiDream task",
                    task_id,
                    f"holds HiDream task {remote}, billed for app task {entry['caller_ref']}",
                )

    # 2. billed once
    for task_id, entries in billed.items():
        if task_id in tasks and len(entries) > 1:
            duplicates += len(entries) - 1
            add("billed once", task_id, f"billed {len(entries)} times: " + _describe(entries))

    # 3. final or unconfirmed, and unconfirmed only for a reason
    statuses = Counter(task["status"] for task in data.tasks)
    reasons: Counter = Counter()
    unconfirmed: list[dict] = []
    refused: dict[str, list[dict]] = defaultdict(list)
    for refusal in data.refused:
        refused[refusal["caller_ref"]].append(refusal)
    for task in data.tasks:
        entries = billed.get(task["id"], [])
        if task["status"] not in (*FINAL, UNCONFIRMED):
            add("final or unconfirmed", task["id"], f"left {task['status']}: " + _state(task))
        elif task["status"] == UNCONFIRMED:
            reason = _unconfirmed_reason(task, entries, refused.get(task["id"], []), data)
            unconfirmed.append({"task": task["id"], "reason": reason, **_times(task)})
            if reason.startswith("!"):
                add("unconfirmed only when unanswered", task["id"], reason[1:])
            else:
                reasons[reason] += 1
        elif entries and not task["remote_task_id"]:
            add(
                "final or unconfirmed",
                task["id"],
                f"{task['status']} without its HiDream task, which was billed: "
                + _describe(entries)
                + "; "
                + _state(task),
            )

    # 4. pictures
    images_of: dict[str, list[dict]] = defaultdict(list)
    for image in data.images:
        images_of[image["task_id"]].append(image)
    stored = identical = 0
    for task in data.tasks:
        entry = by_remote.get(task["remote_task_id"] or "")
        served = entry["served"] if entry else {}
        rows: dict[str, list[dict]] = defaultdict(list)
        for image in images_of.get(task["id"], []):
            rows[image["sub_task_id"]].append(image)
        if task["status"] == "succeeded":
            for sub in entry["sub_task_ids"] if entry else task["sub_task_ids"]:
                if len(rows.get(sub, [])) != 1:
                    add(
                        "one identical picture per sub-task",
                        task["id"],
                        f"sub-task {sub} has {len(rows.get(sub, []))} picture rows",
                    )
        for sub, sub_rows in rows.items():
            if len(sub_rows) > 1:
                duplicates += len(sub_rows) - 1
            if entry and sub not in entry["sub_task_ids"]:
                add(
                    "one identical picture per sub-task",
                    task["id"],
                    f"picture row for sub-task {sub}, not one of HiDream task {entry['task_id']}",
                )
            for image in sub_rows:
                if task["status"] == "succeeded" and image["status"] != "stored":
                    add(
                        "one identical picture per sub-task",
                        task["id"],
                        f"succeeded, but the picture of sub-task {sub} is {image['status']}",
                    )
                if image["status"] != "stored":
                    continue
                stored += 1
                if image["sha256"] is None:
                    add(
                        "one identical picture per sub-task",
                        task["id"],
                        f"picture {image['id']} ({sub}) is stored as {image['file']!r}, "
                        "which is not in storage",
                    )
                elif [image["sha256"]] != served.get(sub):
                    add(
                        "one identical picture per sub-task",
                        task["id"],
                        f"picture {image['id']} ({sub}): stored sha256 {image['sha256'][:16]}…, "
                        f"served {[digest[:16] for digest in served.get(sub, [])]}",
                    )
                else:
                    identical += 1

    # 5. no orphan files
    orphans = sorted(set(data.files) - data.referenced)
    for name in orphans:
        add("no file without a row", None, f"{name} is referenced by no row")

    # 6. no callback left received
    outcomes = Counter(event["outcome"] for event in data.events)
    for event in data.events:
        if event["outcome"] == "received":
            add("no callback left received", event["task_id"], f"event {event['id']}")

    kills = Counter(kill["kind"] for kill in data.kills)
    counts = data.chaos_counts
    figures = {
        "tasks": len(data.tasks),
        "submits billed": len(data.ledger),
        "HTTP 5xx injected": _sum(counts, "server_error:"),
        "HTTP 429 injected": _sum(counts, "throttle:"),
        "connections dropped (submits)": counts.get("drop:submit", 0),
        "connections dropped (polls)": _sum(counts, "drop:") - counts.get("drop:submit", 0),
        "of which hung until the read timeout": _sum(counts, "hang:"),
        "callbacks lost": counts.get("callback_lost", 0),
        "callbacks duplicated": counts.get("callback_duplicate", 0),
        "callbacks reordered": counts.get("callback_reorder", 0),
        "workers killed (pool child)": kills.get("child", 0),
        "workers killed (parent)": kills.get("parent", 0),
        "succeeded": statuses.get("succeeded", 0),
        "partial": statuses.get("partial", 0),
        "failed": statuses.get("failed", 0),
        "unconfirmed": statuses.get(UNCONFIRMED, 0),
        "not settled": sum(n for s, n in statuses.items() if s not in (*FINAL, UNCONFIRMED)),
        "pictures stored (byte-identical)": f"{stored} ({identical})",
        "duplicates found": duplicates,
        "orphan files": len(orphans),
        "callback events": ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "0",
        "callback events left received": outcomes.get("received", 0),
    }
    return Outcome(figures, violations, reasons, unconfirmed)


def _unconfirmed_reason(task: dict, entries: list[dict], refusals: list[dict], data) -> str:
    """Why `task` may be unconfirmed; a text starting with "!" when it may not."""
    for entry in entries:
        for call in entry["callbacks"]:
            if call["outcome"] == 200 and not call["stale"]:
                return (
                    f"!its result callback (HiDream task {entry['task_id']}) was answered 200 "
                    f"at {_clock(call['at'])}, yet it is unconfirmed; {_state(task)}"
                )
    sent = task["request_sent_at"]
    # Its worker died with it: nobody marked it until the sweep, well after any answer or
    # timeout would have come (a live worker marks it itself within its timeouts), and a
    # worker was killed while the request could have been in flight.
    lifetime = data.connect_timeout + data.read_timeout + 2
    marked = task.get("updated_at")
    killed = (
        sent is not None
        and marked is not None
        and marked - sent >= lifetime + 3
        and any(sent - 0.5 <= kill["at"] <= sent + lifetime for kill in data.kills)
    )
    if not entries:
        if killed:
            return "a worker was killed while it was sent; it never reached HiDream"
        answered = [item for item in refusals if sent is None or item["at"] >= sent - 0.5]
        if answered:
            return (
                f"!unconfirmed, but HiDream answered its submit {answered[-1]['answer']} at "
                f"{_clock(answered[-1]['at'])} and billed nothing; {_state(task)}"
            )
        return f"!unconfirmed, but no submit of it reached HiDream; {_state(task)}"
    last = entries[-1]
    lost = {
        "dropped": "HiDream closed the connection without an answer",
        "hung up": "HiDream went silent past the read timeout, then closed",
        "failed": "HiDream's answer could not be written (the caller was gone)",
        "504": "a gateway answered 504 for HiDream, which had taken the task",
        None: "HiDream never wrote its answer",
    }
    if last["reply"] in lost:
        return lost[last["reply"]]
    if last["reply_seconds"] >= data.read_timeout - 0.25:
        return "HiDream's answer came after the read timeout"
    if killed:
        return "a worker was killed waiting for the answer"
    return (
        f"!unconfirmed, but HiDream's answer (task {last['task_id']}) was sent in "
        f"{last['reply_seconds']} s and no worker was killed meanwhile; {_state(task)}"
    )


def _times(task: dict) -> dict:
    sent = task.get("request_sent_at")
    return {"request_sent_at": None if sent is None else _clock(sent)}


def _describe(entries: list[dict]) -> str:
    return "; ".join(
        f"HiDream task {entry['task_id']} at {_clock(entry['accepted_at'])} "
        f"(reply {entry['reply']})"
        for entry in entries
    )


def _state(task: dict) -> str:
    sent = task.get("request_sent_at")
    return (
        f"remote {task['remote_task_id']}, request sent at "
        f"{'-' if sent is None else _clock(sent)}, message {task.get('error_message', '')!r}"
    )


def _clock(seconds: float) -> str:
    """A Unix time as the logs show it (local time, milliseconds)."""
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{int(seconds % 1 * 1000):03d}"


def _sum(counts: dict[str, int], prefix: str) -> int:
    return sum(value for key, value in counts.items() if key.startswith(prefix))


def table(figures: dict[str, object]) -> str:
    """The figures as a Markdown table."""
    lines = ["| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in figures.items()]
    return "\n".join(lines)
