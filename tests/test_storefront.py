"""The demo storefront: the product list and product pages, with published model photos.

Products carry real Pillow images in a temporary media folder; pictures are published with
the demo's ``CatalogPublisher`` through the app's services, as a reviewer's approval would.
"""

from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse
from django.utils import timezone

from hidream_models import services
from hidream_models.models import GeneratedImage, ImageStatus, PublishTarget
from hidream_models.publishing import _load
from shop_demo.catalog.models import ProductImage
from tests.conftest import make_image_bytes

pytestmark = pytest.mark.django_db

AI_MARK = '<figcaption class="shop-ai">AI-generated image</figcaption>'


# -- helpers and fixtures --------------------------------------------------------------------


def html_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def img_tags(html: str) -> list[str]:
    return re.findall(r"<img\b[^>]*>", html)


def tag_with_src(html: str, url: str) -> str:
    [tag] = [tag for tag in img_tags(html) if f'src="{url}"' in tag]
    return tag


def figure_of(html: str, url: str) -> str:
    """The <figure> holding the picture at ``url``."""
    at = html.index(f'src="{url}"')
    start = html.rindex("<figure", 0, at)
    return html[start : html.index("</figure>", at)]


def stored_picture(product, position=0):
    """A stored generated picture of a task for ``product`` (a real JPEG)."""
    options = services.GenerationOptions.validated({"prompt": "a model", "image_count": 2})
    task = services.create_tasks_for_products([product], options).tasks[0]
    image = GeneratedImage(
        task=task,
        sub_task_id=f"{task.pk}-{position}",
        position=position,
        status=ImageStatus.STORED,
        remote_status=1,
        progress=1.0,
        width=300,
        height=400,
        stored_at=timezone.now(),
    )
    data = make_image_bytes(size=(300, 400), color=(30, 30 + 80 * position, 200))
    image.file.save(f"{task.pk}/{position}.jpg", ContentFile(data), save=False)
    image.save()
    return image


@pytest.fixture(autouse=True)
def _fresh_publisher():
    _load.cache_clear()
    yield
    _load.cache_clear()


def product_url(product) -> str:
    return reverse("catalog:product", args=[product.pk])


# -- the product list ------------------------------------------------------------------------


def test_product_list_shows_products_with_lazy_images_and_links(client, make_product):
    dress = make_product(name="Summer dress", price="59.00")
    coat = make_product(name="Wool coat", price="129.50")
    bare = make_product(name="Scarf", with_image=False)

    html = html_of(client.get("/"))

    for product in (dress, coat):
        tag = tag_with_src(html, product.image.url)
        assert 'loading="lazy"' in tag
        assert f'alt="{product.name}"' in tag
        assert 'width="' in tag and 'height="' in tag
    for product in (dress, coat, bare):
        assert f'href="{product_url(product)}"' in html
        assert product.name in html
    assert "€59.00" in html and "€129.50" in html
    assert len(img_tags(html)) == 2, "a product without image got an <img>"
    assert html.index("Scarf") < html.index("Summer dress") < html.index("Wool coat")


def test_product_list_marks_an_ai_main_image(client, make_product):
    product = make_product(name="Summer dress")
    plain = make_product(name="Wool coat")
    picture = stored_picture(product)
    services.approve_image(picture, publish=PublishTarget.MAIN)
    product.refresh_from_db()

    html = html_of(client.get("/"))
    card = html[html.index(f'href="{product_url(product)}"') :]
    card = card[: card.index("</li>")]
    assert f'src="{product.image.url}"' in card and 'class="shop-ai"' in card
    plain_card = html[html.index(f'href="{product_url(plain)}"') :]
    plain_card = plain_card[: plain_card.index("</li>")]
    assert 'class="shop-ai"' not in plain_card


def test_empty_shop_says_so(client):
    assert "No products yet." in html_of(client.get("/"))


# -- the product page ------------------------------------------------------------------------


def test_product_page_shows_the_main_image(client, make_product):
    product = make_product(name="Summer dress")
    product.description = "Light cotton, knee length."
    product.save()
    html = html_of(client.get(product_url(product)))
    tag = tag_with_src(html, product.image.url)
    assert f'alt="{product.name}"' in tag
    assert "<h1>Summer dress</h1>" in html
    assert "Light cotton, knee length." in html and product.sku in html
    assert AI_MARK not in html, "a shop photo is marked as AI-generated"
    assert f'href="{reverse("catalog:products")}"' in html


def test_published_gallery_photos_are_shown_marked_and_unpublished_ones_are_not(
    client, make_product
):
    product = make_product(name="Summer dress")
    ProductImage.objects.create(
        product=product,
        image=product.image.name,
        position=0,
        alt_text="Back view",
        ai_generated=False,
    )
    kept, dropped = stored_picture(product), stored_picture(product, 1)
    services.approve_image(kept, publish=PublishTarget.GALLERY)
    services.approve_image(dropped, publish=PublishTarget.GALLERY)
    kept_item = ProductImage.objects.get(generated_image=kept)
    dropped_item = ProductImage.objects.get(generated_image=dropped)

    html = html_of(client.get(product_url(product)))
    for item in (kept_item, dropped_item):
        figure = figure_of(html, item.image.url)
        assert AI_MARK in figure
        assert 'loading="lazy"' in figure and f'alt="{item.alt_text}"' in figure
        assert "AI" in item.alt_text

    services.unpublish_image(dropped)
    html = html_of(client.get(product_url(product)))
    assert kept_item.image.url in html
    assert AI_MARK in figure_of(html, kept_item.image.url)
    assert dropped_item.image.url not in html
    # the shop's own gallery photo is shown, unmarked
    gallery = html[html.index('class="shop-gallery"') :]
    assert 'alt="Back view"' in gallery
    own = [tag for tag in img_tags(gallery) if 'alt="Back view"' in tag]
    assert len(own) == 1
    own_figure = gallery[gallery.rindex("<figure", 0, gallery.index('alt="Back view"')) :]
    assert AI_MARK not in own_figure[: own_figure.index("</figure>")]
    assert html.count(AI_MARK) == 1


def test_main_image_shows_the_ai_mark_after_publishing_as_main(client, make_product):
    product = make_product(name="Summer dress")
    original_url = product.image.url
    picture = stored_picture(product)
    services.approve_image(picture, publish=PublishTarget.MAIN)
    product.refresh_from_db()

    html = html_of(client.get(product_url(product)))
    main = html[html.index('class="shop-main"') :]
    main = main[: main.index("</figure>")]
    assert f'src="{product.image.url}"' in main and original_url not in main
    assert AI_MARK in main
    assert f'alt="{product.image_alt_text}"' in main and "AI" in product.image_alt_text

    services.unpublish_image(picture)
    html = html_of(client.get(product_url(product)))
    main = html[html.index('class="shop-main"') :]
    main = main[: main.index("</figure>")]
    assert f'src="{original_url}"' in main and AI_MARK not in main


def test_unknown_product_is_404(client, make_product):
    product = make_product()
    assert client.get(reverse("catalog:product", args=[product.pk + 1000])).status_code == 404
    assert client.get("/products/not-a-number/").status_code == 404


# -- page basics -----------------------------------------------------------------------------


def test_pages_are_responsive(client, make_product):
    product = make_product()
    for url in ("/", product_url(product)):
        html = html_of(client.get(url))
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
        assert '<html lang="en">' in html


def test_html_in_a_product_name_is_escaped(client, make_product):
    name = '<script>alert("x")</script> & <b>bold</b>'
    product = make_product(name=name)
    product.description = "<img src=x onerror=alert(1)>"
    product.save()
    for url in ("/", product_url(product)):
        html = html_of(client.get(url))
        assert "<script>alert" not in html and "<b>bold</b>" not in html
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold" in html
    detail = html_of(client.get(product_url(product)))
    assert "<img src=x onerror" not in detail
    assert "&lt;img src=x onerror=alert(1)&gt;" in detail


def test_pages_render_in_chinese_from_accept_language(client, make_product):
    product = make_product()
    for url in ("/", product_url(product)):
        html = html_of(client.get(url, headers={"accept-language": "zh-Hans"}))
        assert '<html lang="zh-hans">' in html


def test_pages_render_in_chinese_after_set_language(client, make_product):
    product = make_product()
    response = client.post(
        reverse("set_language"), {"language": "zh-hans", "next": product_url(product)}
    )
    assert response.status_code == 302 and response["Location"] == product_url(product)
    for url in ("/", product_url(product)):
        assert '<html lang="zh-hans">' in html_of(client.get(url))
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    assert '<html lang="en">' in html_of(client.get("/"))


def test_language_switcher_is_on_every_page(client, make_product):
    product = make_product()
    html = html_of(client.get(product_url(product)))
    form = html[html.index('class="shop-lang"') :]
    form = form[: form.index("</form>")]
    assert f'action="{reverse("set_language")}"' in html
    assert 'value="zh-hans"' in form and 'value="en" selected' in form
    assert f'name="next" type="hidden" value="{product_url(product)}"' in form
