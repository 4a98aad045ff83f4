"""An offline stand-in for HiDream's e-commerce API, for the demo and the integration tests.

``HiDreamSimulator`` serves the submit, results and template endpoints on loopback with
HiDream's envelope, finishes tasks after a delay, draws real result pictures from the
submitted image and calls ``notify_url`` like HiDream does. It does not import Django;
``manage.py hidream_simulator`` is a thin wrapper around it. Tests can inject faults
(latency, HTTP errors, throttling, lost replies, callback and result-file faults, or all of
them by seeded probability) through ``sim.faults`` and its helpers: see faults.py. Every
task it accepts, and so bills, is recorded in ``sim.ledger`` (ledger.py).
"""

from .faults import Faults
from .server import HiDreamSimulator

__all__ = ["Faults", "HiDreamSimulator"]
