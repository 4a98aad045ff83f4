"""``manage.py seed_demo``: the demo's admin user and a dozen products. Safe to run again."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction

from hidream_models.models import HiDreamPreset, HiDreamTemplate
from shop_demo.catalog.garments import draw_garment
from shop_demo.catalog.models import Product

PRODUCTS = [
    ("DEMO-001", "Linen T-shirt, coral", "tshirt", (236, 110, 90), (255, 255, 255), "29.00"),
    ("DEMO-002", "Summer dress, sky blue", "dress", (110, 170, 230), (250, 240, 200), "79.00"),
    ("DEMO-003", "Hoodie, forest green", "hoodie", (46, 110, 70), (230, 230, 230), "65.00"),
    ("DEMO-004", "Pleated skirt, mustard", "skirt", (222, 170, 40), (90, 60, 20), "49.00"),
    ("DEMO-005", "Chinos, sand", "trousers", (200, 180, 140), (120, 100, 70), "59.00"),
    ("DEMO-006", "Denim jacket", "jacket", (60, 90, 140), (200, 170, 90), "99.00"),
    ("DEMO-007", "Cotton T-shirt, black", "tshirt", (35, 35, 40), (220, 40, 60), "25.00"),
    ("DEMO-008", "Evening dress, wine", "dress", (120, 20, 50), (230, 200, 120), "129.00"),
    ("DEMO-009", "Hoodie, heather grey", "hoodie", (160, 160, 165), (40, 40, 40), "59.00"),
    ("DEMO-010", "Mini skirt, rose", "skirt", (230, 140, 170), (255, 255, 255), "39.00"),
    ("DEMO-011", "Wide trousers, navy", "trousers", (30, 40, 90), (200, 200, 210), "69.00"),
    ("DEMO-012", "Rain jacket, yellow", "jacket", (250, 210, 40), (40, 40, 40), "89.00"),
]

PRESETS = [
    ("Spring campaign", "Casual look, city street", "h-001", "s-002", 2),
    ("Studio basics", "Plain studio, one picture per product", "h-004", "s-001", 1),
]


class Command(BaseCommand):
    help = "Create the demo superuser (admin / admin) and 12 products with drawn photos."

    @transaction.atomic
    def handle(self, *args, **options):
        user_model = get_user_model()
        admin, created = user_model.objects.get_or_create(
            username="admin",
            defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"},
        )
        if created:
            admin.set_password("admin")
            admin.save()
        made = 0
        for sku, name, shape, color, accent, price in PRODUCTS:
            product, is_new = Product.objects.get_or_create(
                sku=sku,
                defaults={
                    "name": name,
                    "price": Decimal(price),
                    "description": f"{name}, from the demo collection.",
                },
            )
            if not product.image or not product.image.storage.exists(product.image.name):
                product.image.save(
                    f"{sku.lower()}.jpg", ContentFile(draw_garment(shape, color, accent))
                )
            made += is_new
        presets = self._seed_presets()
        self.stdout.write(
            f"seed_demo: admin user {'created' if created else 'kept'}; "
            f"{made} products created, {len(PRODUCTS) - made} already there; "
            f"{presets} presets created."
        )

    def _seed_presets(self) -> int:
        """Two presets, once HiDream's templates have been synced (run_demo syncs first)."""
        templates = {t.remote_id: t for t in HiDreamTemplate.objects.filter(is_active=True)}
        made = 0
        for name, description, human, scene, count in PRESETS:
            if human not in templates or scene not in templates:
                continue
            _preset, is_new = HiDreamPreset.objects.get_or_create(
                name=name,
                defaults={
                    "description": description,
                    "mode": "template",
                    "human_template": templates[human],
                    "scene_template": templates[scene],
                    "image_count": count,
                },
            )
            made += is_new
        return made
