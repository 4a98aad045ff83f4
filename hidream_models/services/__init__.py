"""The app's use cases. Views, admin, API, tasks and commands call these, nothing lower.

- ``creation``: create tasks for products or images, and enqueue their submission;
- ``submission``: submit a queued task exactly once (``submit_task``);
- ``results``: ``apply_result`` for callbacks and polls, and ``download_result``;
- ``callbacks``: ``apply_received_callbacks`` and ``apply_callback_event``, the jobs behind
  the callback view;
- ``polling``: ``sync_task`` and the ``sync_pass`` sweep behind ``hidream_sync``;
- ``actions``: refresh and retry, for staff;
- ``review``: approve or reject a picture;
- ``publishing``: approve-and-publish, publish and unpublish through the shop's publisher;
- ``templates``: sync HiDream's template catalogue.
"""

from ..files import VerifiedUpload, store_upload, stored_uploads, verify_upload
from .actions import (
    HiDreamActionRefused,
    HiDreamAlreadyRetried,
    HiDreamRetryWouldFailAgain,
    refresh_task,
    retry_task,
)
from .callbacks import apply_callback_event, apply_received_callbacks
from .creation import (
    CreationReport,
    GenerationOptions,
    create_task_for_image,
    create_tasks_for_products,
    enqueue_submissions,
    estimated_credits,
    product_photo,
)
from .polling import SyncReport, sync_pass, sync_task
from .publishing import approve_image, publish_image, reject_image, unpublish_image
from .results import ApplyOutcome, apply_result, download_result
from .review import review_image
from .submission import callback_url, submit_task

__all__ = [
    "ApplyOutcome",
    "CreationReport",
    "GenerationOptions",
    "HiDreamActionRefused",
    "HiDreamAlreadyRetried",
    "HiDreamRetryWouldFailAgain",
    "SyncReport",
    "apply_callback_event",
    "apply_received_callbacks",
    "apply_result",
    "approve_image",
    "publish_image",
    "reject_image",
    "unpublish_image",
    "callback_url",
    "create_task_for_image",
    "create_tasks_for_products",
    "download_result",
    "enqueue_submissions",
    "estimated_credits",
    "product_photo",
    "refresh_task",
    "retry_task",
    "review_image",
    "store_upload",
    "stored_uploads",
    "verify_upload",
    "VerifiedUpload",
    "submit_task",
    "sync_pass",
    "sync_task",
]
