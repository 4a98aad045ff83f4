"""shop_demo reads every HIDREAM_* setting (and DATABASE_URL, SECRET_KEY, DEBUG) from the
environment, with the right type."""

import json
import os
import subprocess
import sys
from pathlib import Path

from hidream_models.conf import SETTINGS

ROOT = Path(__file__).resolve().parent.parent

SAMPLES = {
    str: "https://env.example.com",
    int: "4242",
    bool: "true",
    float: "12.5",
    list: "a.com,.b.com",
    dict: '{"catalog.product": "photo"}',
}


def _kind(spec):
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    return float if float in kinds else kinds[0]


def test_every_hidream_setting_comes_from_the_environment(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIDREAM_", "DJANGO_"))}
    for name, spec in SETTINGS.items():
        env[f"HIDREAM_{name}"] = SAMPLES[_kind(spec)]
    env.update(
        DJANGO_SETTINGS_MODULE="shop_demo.settings",
        DEBUG="false",
        SECRET_KEY="from-env",
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}",
    )
    script = (
        "import json, django; django.setup(); from django.conf import settings as s;"
        "from hidream_models.conf import SETTINGS;"
        "print(json.dumps({n: getattr(s, 'HIDREAM_' + n) for n in SETTINGS} | "
        "{'DEBUG': s.DEBUG, 'SECRET_KEY': s.SECRET_KEY,"
        " 'DB': str(s.DATABASES['default']['NAME'])}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    values = json.loads(out)
    expected = {
        str: SAMPLES[str],
        int: 4242,
        bool: True,
        float: 12.5,
        list: ["a.com", ".b.com"],
        dict: {"catalog.product": "photo"},
    }
    for name, spec in SETTINGS.items():
        assert values[name] == expected[_kind(spec)], name
    assert values["DEBUG"] is False and values["SECRET_KEY"] == "from-env"
    assert values["DB"].endswith("x.sqlite3")
