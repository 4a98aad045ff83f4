"""The HiDream simulator as the benchmarks use it: result files served like from a CDN.

The stock simulator draws each result picture with Pillow on its first download, which
would put the simulator's drawing time (tens of milliseconds of CPU per picture, on the same
two cores) into the app's figures. HiDream serves finished files. ``BenchSimulator`` draws
one real result picture once and serves it for every finished sub-task; everything else
(endpoints, latency, throttling, callbacks, result-file faults) is the stock simulator.
"""

from __future__ import annotations

import threading

from hidream_models.simulator import HiDreamSimulator
from hidream_models.simulator.state import is_finished


class BenchSimulator(HiDreamSimulator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._canned: bytes | None = None
        self._canned_lock = threading.Lock()

    def result_jpeg(self, sub_task_id: str) -> bytes | None:
        with self._lock:
            task, sub = self._sub_tasks.get(sub_task_id, (None, None))
            if sub is None or not is_finished(task) or sub.final_status != 1:
                return None
        with self._canned_lock:
            if self._canned is None:
                self._canned = super().result_jpeg(sub_task_id)
            return self._canned
