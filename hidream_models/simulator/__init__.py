"""An offline stand-in for HiDream's e-commerce API, for the demo and the integration tests.

``HiDreamSimulator`` serves the submit, results and template endpoints on loopback with
HiDream's envelope, finishes tasks after a delay, draws real result pictures from the
submitted image and calls ``notify_url`` like HiDream does. It does not import Django;
``manage.py hidream_simulator`` is a thin wrapper around it.
"""

from .server import HiDreamSimulator

__all__ = ["HiDreamSimulator"]
