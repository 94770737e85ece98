"""Settings from a Django project: ``POLLER_*`` names in its settings.py."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource


class DjangoSettingsSource(PydanticBaseSettingsSource):
    """``POLLER_*`` names from a Django project's settings, when ``DJANGO_SETTINGS_MODULE`` is set.

    Below environment variables (they win) and above the defaults. The project directory (the
    working directory, as with ``manage.py``) is put on ``sys.path`` so the settings import from
    the worker and the ``poller`` command too. Reading settings needs no ``django.setup()``.
    """

    def __call__(self) -> dict[str, Any]:
        """The fields the project's settings define."""
        if django_settings_module() is None:
            return {}
        put_project_on_path()
        from django.conf import settings as django_settings

        found = {}
        for name in self.settings_cls.model_fields:
            value = getattr(django_settings, f"POLLER_{name.upper()}", None)
            if value is not None:
                found[name] = value
        return found

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: ``__call__`` reads every field at once."""
        return None, field_name, False


def django_settings_module() -> str | None:
    """``DJANGO_SETTINGS_MODULE`` when it is set and Django is installed, else None."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE")
    return module if module and importlib.util.find_spec("django") is not None else None


def put_project_on_path() -> None:
    """Put the working directory (the project's root) first on ``sys.path``, once."""
    root = os.getcwd()
    if root not in sys.path:
        sys.path.insert(0, root)
