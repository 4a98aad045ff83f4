"""hidream_models: AI on-model photos for Django shops, with HiDream's e-commerce API."""

__version__ = "0.1.0"
