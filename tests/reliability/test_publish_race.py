"""Publishing is all or nothing, also when people race (issue 14, point 6).

Ten reviewers make ten pictures of one product its main image at the same moment. Each publish
used to read "the current main image" before the publisher locked the product, so on
PostgreSQL several saw none, and the product ended with several pictures marked as its main
image, the copies of all but one stranded. Publish and unpublish now lock the product row first,
so they take turns: exactly one main image, one copy in storage, and unpublishing it restores the
product's own photo. Threads on PostgreSQL (and on a shared SQLite file, one writer at a time).
"""

from __future__ import annotations

import random

from django.core.files.storage import default_storage

from hidream_models import files, services
from hidream_models.models import GeneratedImage, PublishTarget, ReviewState
from shop_demo.catalog.models import Product
from tests.api.helpers import make_generated_image, make_task
from tests.reliability.conftest import race, stored_files

CONCURRENT = 10


def published_files() -> list[str]:
    root = default_storage.path(f"{files.storage_prefix()}{files.PUBLISHED_FOLDER}")
    return sorted(str(path) for path in stored_files(root))


def test_ten_concurrent_main_image_publishes_leave_exactly_one(shared_db, make_product):
    product = make_product(name="Race dress")
    original = product.image.name
    pictures = [
        make_generated_image(make_task(product), review_state=ReviewState.APPROVED)
        for _ in range(CONCURRENT)
    ]
    random.Random(14).shuffle(pictures)  # seeded: the start order is not the creation order

    errors = race(
        shared_db,
        [
            lambda picture=picture: services.publish_image(picture, PublishTarget.MAIN)
            for picture in pictures
        ],
    )

    assert errors == []
    [main] = GeneratedImage.objects.filter(published_as=PublishTarget.MAIN)
    product = Product.objects.get(pk=product.pk)
    assert product.image_ai_generated
    assert main.publish_state[files.STATE_FILES] == [product.image.name]
    assert main.publish_state["previous_image"] == original, "the original was lost"
    # Every copy but the one on the product went after its unpublish committed.
    assert published_files() == [default_storage.path(product.image.name)]

    services.unpublish_image(main)
    product.refresh_from_db()
    assert product.image.name == original and not product.image_ai_generated
    assert default_storage.exists(original)
    assert published_files() == []
