"""The REST API (django-ninja); the instance lives in ``outbound.api.main``."""
