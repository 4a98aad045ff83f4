"""The HiDream simulator's in-memory task records and how a task reports its progress.

A validated submission becomes an ``Order``; ``new_task`` turns it into a ``Task`` with
one ``SubTask`` per requested picture. A task queues for the first quarter of its
``delay``, processes for the rest, then finishes with each sub-task's final status
(1 success, anything else a simulated failure). ``task_result`` renders that timeline
as the ``result`` of HiDream's results endpoint and callback, and ``draw_result``
draws a successful sub-task's picture. Nothing here locks, speaks HTTP or imports
Django: the simulator owns the task tables and their lock.
"""

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL.Image import Image

from . import rendering

FAILURES = {
    3: "generation failed (simulated failure)",
    4: "the result was rejected by content moderation (simulated)",
    1004: "the model produced no result; try another prompt or template (simulated)",
}
FAILURES[1005] = FAILURES[1006] = FAILURES[1004]


@dataclass
class Order:
    """A validated submission: what a task needs to draw its results."""

    product: Image
    human_template_id: str | None
    scene_template_id: str | None
    prompt: str | None
    image_count: int
    notify_url: str | None


@dataclass
class SubTask:
    sub_task_id: str
    index: int  # 1-based, for the caption
    final_status: int
    jpeg: bytes | None = None  # rendered on first download, then kept


@dataclass
class Task:
    task_id: str
    started: float  # time.monotonic()
    delay: float
    order: Order
    sub_tasks: list[SubTask] = field(default_factory=list)
    # Chaos (faults.py): what happens to this task's callback, drawn when it was accepted;
    # None follows ``faults.callback_mode``.
    callback_plan: tuple[str, ...] | None = None


def new_task(order: Order, delay: float, forced: list[int]) -> Task:
    """A task starting now; sub-task i ends with forced[i - 1] if given, else 1 (success)."""
    task = Task(str(uuid.uuid4()), time.monotonic(), max(0.0, float(delay)), order)
    for index in range(1, order.image_count + 1):
        status = forced[index - 1] if index <= len(forced) else 1
        task.sub_tasks.append(SubTask(str(uuid.uuid4()), index, status))
    return task


def is_finished(task: Task) -> bool:
    return time.monotonic() - task.started >= task.delay


def draw_result(task: Task, sub: SubTask) -> bytes:
    """The JPEG result picture of `sub`, one of `task`'s sub-tasks (not cached here)."""
    order = task.order
    return rendering.render_result(
        order.product,
        human_template_id=order.human_template_id,
        scene_template_id=order.scene_template_id,
        prompt=order.prompt,
        index=sub.index,
        count=len(task.sub_tasks),
    )


def task_result(task: Task, result_url: Callable[[str], str]) -> dict:
    """The task as HiDream reports it now; `result_url` gives a sub-task's picture URL."""
    elapsed = time.monotonic() - task.started
    queued = task.delay / 4  # the first quarter in the queue, the rest processing
    items = []
    for sub in task.sub_tasks:
        item = {
            "sub_task_id": sub.sub_task_id,
            "task_status": 0,
            "task_completion": 0,
            "image": "",
            "description": "",
        }
        if elapsed >= task.delay:
            ok = sub.final_status == 1
            item.update(
                task_status=sub.final_status,
                task_completion=1,
                image=result_url(sub.sub_task_id) if ok else "",
                description=""
                if ok
                else FAILURES.get(sub.final_status, f"simulated status {sub.final_status}"),
            )
        elif elapsed >= queued:
            progress = (elapsed - queued) / (task.delay - queued)
            item.update(task_status=2, task_completion=round(min(progress, 0.99), 2))
        items.append(item)
    return {"task_id": task.task_id, "sub_task_results": items}
