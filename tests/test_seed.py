"""``manage.py seed_demo``: the demo's admin user and a dozen products, safe to run twice."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from PIL import Image

from shop_demo.catalog.models import Product

pytestmark = pytest.mark.django_db


def _seed() -> str:
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def _media_files(media_root) -> set[str]:
    return {str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file()}


def test_seed_demo_creates_admin_and_twelve_products_once(media_root):
    first = _seed()
    assert "12 products created" in first

    admins = get_user_model().objects.filter(username="admin")
    assert admins.count() == 1
    admin = admins.get()
    assert admin.is_superuser and admin.is_staff and admin.is_active
    assert admin.check_password("admin")
    assert authenticate(username="admin", password="admin") == admin

    products = list(Product.objects.order_by("sku"))
    assert len(products) == 12
    assert len({p.sku for p in products}) == 12
    digests = set()
    for product in products:
        assert product.image, product.sku
        assert product.image.storage.exists(product.image.name)
        with product.image.open("rb") as fh:
            data = fh.read()
        digests.add(hashlib.sha256(data).hexdigest())
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()  # a full decode, not just the header
            assert picture.width > 100 and picture.height > 100
    assert len(digests) == 12, "every product needs its own picture"

    state = {p.sku: (p.pk, p.name, p.price, p.image.name) for p in Product.objects.all()}
    files = _media_files(media_root)
    admin_password = admin.password

    second = _seed()
    assert "0 products created, 12 already there" in second
    assert "admin user kept" in second
    assert get_user_model().objects.count() == 1
    assert get_user_model().objects.get().password == admin_password
    assert {p.sku: (p.pk, p.name, p.price, p.image.name) for p in Product.objects.all()} == state
    assert _media_files(media_root) == files, "the second run wrote new files"


def test_seed_demo_redraws_a_missing_photo_and_keeps_a_changed_password(media_root):
    _seed()
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed-by-the-owner")
    admin.save()
    product = Product.objects.get(sku="DEMO-003")
    product.image.storage.delete(product.image.name)

    _seed()
    admin.refresh_from_db()
    assert admin.check_password("changed-by-the-owner")
    product.refresh_from_db()
    assert product.image.storage.exists(product.image.name)
    with product.image.open("rb") as fh, Image.open(fh) as picture:
        picture.load()
    assert Product.objects.count() == 12
