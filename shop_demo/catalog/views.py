"""The demo storefront: a product list and product pages with their published model photos."""

from django.db.models import Prefetch
from django.views.generic import DetailView, ListView

from .models import Product, ProductImage


class ProductListView(ListView):
    """``/``: every product with its main photo."""

    model = Product
    template_name = "catalog/product_list.html"
    context_object_name = "products"
    paginate_by = 24


class ProductDetailView(DetailView):
    """``/products/<pk>/``: the main photo and the gallery, AI-generated pictures marked."""

    model = Product
    template_name = "catalog/product_detail.html"
    context_object_name = "product"

    def get_queryset(self):
        return Product.objects.prefetch_related(
            Prefetch("gallery", queryset=ProductImage.objects.order_by("position", "pk"))
        )
