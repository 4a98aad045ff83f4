"""The REST API (DRF) under ``/api/hidream/``: include ``hidream_models.api.urls`` there."""
