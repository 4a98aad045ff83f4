"""The chaos run (``make test-chaos``): the whole system under seeded faults and killed workers.

``python -m tests.chaos --tasks 200`` starts, on PostgreSQL (a database of its own) and Redis,
the HiDream simulator with seeded faults by probability (its own process), the web server
that takes the callbacks, ``hidream_sync --loop`` and two Celery workers; creates the tasks
while a chaos thread SIGKILLs a worker (a pool child or the parent) every 15–30 s and starts
a new one; lets it settle; then compares every task with the simulator's ledger of billed
tasks and with the storage (``invariants.py``), prints the figures and exits non-zero on any
violation. ``run.py`` drives it; ``settings.py`` holds the run's short timeouts.
"""
