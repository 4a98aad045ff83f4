"""MkDocs hooks (mkdocs.yml): pages generated from the code at build time.

- ``settings.md``: every ``HIDREAM_*`` setting with its default and help, from
  ``hidream_models.conf.SETTINGS``, the same source as the README's table;
- ``api.md``: every REST API operation with its parameters and answers, from the OpenAPI schema
  drf-spectacular makes of ``hidream_models.api`` (under the README's settings only);
- ``changelog.md``: the project's ``CHANGELOG.md``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent


def on_files(files, config):
    for name, make in (("settings.md", settings_page), ("api.md", api_page)):
        files.append(File.generated(config, name, content=make()))
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "changelog.md", content=changelog))
    return files


def _django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.api.bare_settings")
    import django

    django.setup()


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def settings_page() -> str:
    _django()
    from hidream_models.conf import SETTINGS

    lines = [
        "# Settings reference",
        "",
        "Every setting of the app, with its default. Set them in your Django settings (or, in",
        "the demo shop, as environment variables of the same name). Generated from",
        "`hidream_models/conf.py`.",
        "",
        "| setting | default | what it does |",
        "|---|---|---|",
    ]
    for name, spec in SETTINGS.items():
        default = "(empty)" if spec.default in ("", None, {}, (), []) else f"`{spec.default!r}`"
        lines.append(f"| `HIDREAM_{name}` | {_cell(default)} | {_cell(spec.doc)} |")
    return "\n".join(lines) + "\n"


def api_page() -> str:
    _django()
    from django.test import RequestFactory

    from hidream_models.api.docs import HiDreamSchemaView

    request = RequestFactory().get("/api/hidream/schema/", {"format": "json"})
    response = HiDreamSchemaView.as_view()(request)
    response.render()
    schema = json.loads(response.content)
    lines = [
        "# REST API reference",
        "",
        _cell(schema["info"].get("description", "")),
        "",
        "Generated from the OpenAPI schema the app serves at `/api/hidream/schema/` (Swagger UI",
        "at `/api/hidream/docs/`), which clients can be generated from.",
        "",
    ]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            lines += [f"## `{method.upper()} {path}`", ""]
            if operation.get("summary"):
                lines += [_cell(operation["summary"]), ""]
            if operation.get("description"):
                lines += [operation["description"].strip(), ""]
            parameters = operation.get("parameters", [])
            if parameters:
                lines += ["| parameter | in | what it is |", "|---|---|---|"]
                for parameter in parameters:
                    lines.append(
                        f"| `{parameter['name']}` | {parameter['in']} | "
                        f"{_cell(parameter.get('description', ''))} |"
                    )
                lines.append("")
            lines += ["| answer | meaning |", "|---|---|"]
            for code, answer in operation.get("responses", {}).items():
                lines.append(f"| {code} | {_cell(answer.get('description', ''))} |")
            lines.append("")
    return "\n".join(lines) + "\n"
