"""The app's data, one module per subject; import everything from ``hidream_models.models``.

- ``tasks``: ``ModelImageTask``, a submission to HiDream, and its statuses;
- ``images``: ``GeneratedImage``, a picture, its review and publication;
- ``callbacks``: ``CallbackEvent``, the callback log;
- ``catalogue``: ``HiDreamTemplate`` and ``HiDreamPreset``;
- ``limits``: the rows behind the plan limits shared by all workers;
- ``idempotency``: ``HiDreamIdempotencyKey``, the API's Idempotency-Key records.
"""

from .callbacks import CallbackEvent, CallbackOutcome
from .catalogue import HiDreamPreset, HiDreamTemplate, TemplateKind
from .idempotency import HiDreamIdempotencyKey
from .images import (
    FINAL_IMAGE_STATUSES,
    GeneratedImage,
    ImageStatus,
    PublishTarget,
    ReviewState,
)
from .limits import HiDreamRateReservation, HiDreamRequestSlot
from .tasks import (
    FINAL_TASK_STATUSES,
    REMOTE_TASK_STATUSES,
    GenerationMode,
    ModelImageTask,
    TaskStatus,
    new_callback_token,
)

__all__ = [
    "FINAL_IMAGE_STATUSES",
    "FINAL_TASK_STATUSES",
    "REMOTE_TASK_STATUSES",
    "CallbackEvent",
    "CallbackOutcome",
    "GeneratedImage",
    "GenerationMode",
    "HiDreamIdempotencyKey",
    "HiDreamPreset",
    "HiDreamRateReservation",
    "HiDreamRequestSlot",
    "HiDreamTemplate",
    "ImageStatus",
    "ModelImageTask",
    "PublishTarget",
    "ReviewState",
    "TaskStatus",
    "TemplateKind",
    "new_callback_token",
]
