"""The Chinese (Simplified) catalogs of the app and of the demo shop.

Each catalog must be complete (no untranslated or fuzzy entry), keep every placeholder and HTML
tag of its msgids, be compiled (the committed ``.mo`` holds exactly the ``.po``'s messages),
cover every string the code marks (a fresh ``makemessages`` finds nothing new), and actually
show up: the admin pages and the storefront render in Chinese for a ``zh-hans`` browser.

To update the catalogs after changing marked strings::

    cd hidream_models && DJANGO_SETTINGS_MODULE=shop_demo.settings PYTHONPATH=.. \\
        django-admin makemessages -l zh_Hans --no-obsolete --ignore "simulator/*"
    python manage.py makemessages -l zh_Hans --no-obsolete --ignore "hidream_models/*" \\
        --ignore ".venv/*" --ignore "tests/*" --ignore "var/*"
    # translate the new entries, then in each LC_MESSAGES folder:
    msgfmt --check -o django.mo django.po
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import polib
import pytest
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext

ROOT = Path(__file__).resolve().parent.parent
LC_MESSAGES = Path("locale", "zh_Hans", "LC_MESSAGES")
APP_PO = ROOT / "hidream_models" / LC_MESSAGES / "django.po"
DEMO_PO = ROOT / "shop_demo" / LC_MESSAGES / "django.po"
CATALOGS = {"hidream_models": APP_PO, "shop_demo": DEMO_PO}
ZH = "zh-hans"

#: printf-style placeholders (%(name)s, %(url)r, %s, %%), as Python's % operator reads them
PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(?:\d+|\*)?(?:\.\d+)?[diouxXeEfFgGcrsa%]")
HTML_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
#: {{ var }} left in a msgid would mean a template variable blocktranslate did not turn into %()s
TEMPLATE_VAR = re.compile(r"\{\{\s*\w+\s*\}\}")

catalog_params = pytest.mark.parametrize("name", sorted(CATALOGS))


def load(name: str) -> polib.POFile:
    return polib.pofile(str(CATALOGS[name]))


def key(entry) -> tuple:
    return (entry.msgctxt, entry.msgid, entry.msgid_plural)


def translations(entry) -> list[str]:
    if entry.msgid_plural:
        return [entry.msgstr_plural[k] for k in sorted(entry.msgstr_plural, key=int)]
    return [entry.msgstr]


def messages(catalog) -> dict:
    """What a compiled catalog holds: msgid (with context and plural) → translation(s)."""
    out = {}
    for entry in catalog:
        if entry.obsolete or "fuzzy" in entry.flags:
            continue  # msgfmt leaves these out
        if entry.msgid_plural:
            value = tuple(sorted((int(k), v) for k, v in entry.msgstr_plural.items()))
        else:
            value = entry.msgstr
        out[key(entry)] = value
    return out


def placeholders(text: str, python_format: bool) -> Counter:
    found = Counter(TEMPLATE_VAR.findall(text))
    if python_format:
        found.update(PLACEHOLDER.findall(text))
    return found


def msgstr_of(msgid: str) -> str:
    """The translation of msgid in the app catalog, as committed."""
    for entry in load("hidream_models"):
        if entry.msgid == msgid:
            return translations(entry)[0]
    raise AssertionError(f"{msgid!r} is not in {APP_PO}")


def zh(msgid: str) -> str:
    """What Django shows for msgid in Chinese; it must differ from the English."""
    with translation.override(ZH):
        text = gettext(msgid)
    assert text != msgid, f"{msgid!r} is not translated at run time"
    return text


# -- (a) complete and well-formed ------------------------------------------------------------


@catalog_params
def test_catalog_is_complete_and_not_fuzzy(name):
    po = load(name)
    assert len(po) > 0
    assert not po.metadata_is_fuzzy, f"{name}: the header is marked fuzzy"
    untranslated = [e.msgid for e in po.untranslated_entries() if not e.obsolete]
    fuzzy = [e.msgid for e in po.fuzzy_entries()]
    obsolete = [e.msgid for e in po.obsolete_entries()]
    assert untranslated == [], f"{name}: untranslated entries: {untranslated}"
    assert fuzzy == [], f"{name}: fuzzy entries: {fuzzy}"
    assert obsolete == [], f"{name}: obsolete entries (run makemessages --no-obsolete)"


@catalog_params
def test_catalog_header(name):
    meta = load(name).metadata
    assert meta["Language"] == "zh_Hans"
    assert meta["Content-Type"] == "text/plain; charset=UTF-8"
    assert meta["Content-Transfer-Encoding"] == "8bit"
    assert re.fullmatch(r"nplurals=1; plural=0;?", meta["Plural-Forms"])


@catalog_params
def test_plural_entries_have_the_one_chinese_form(name):
    for entry in load(name):
        if entry.msgid_plural:
            assert [int(k) for k in entry.msgstr_plural] == [0], entry.msgid
            assert entry.msgstr_plural[0].strip(), entry.msgid


# -- (b) placeholders and markup survive ------------------------------------------------------


@catalog_params
def test_placeholders_and_tags_are_kept(name):
    problems = []
    for entry in load(name):
        python_format = "python-format" in entry.flags or bool(PLACEHOLDER.search(entry.msgid))
        # A plural msgstr may use the singular's or the plural's placeholders (Chinese has one
        # form for both); it must not invent any and must not drop one used in both.
        source_sets = [placeholders(entry.msgid, python_format)]
        if entry.msgid_plural:
            source_sets.append(placeholders(entry.msgid_plural, python_format))
        wanted = set(source_sets[0]).union(*source_sets[1:])
        needed = set(source_sets[0]).intersection(*source_sets[1:])
        tags = Counter(HTML_TAG.findall(entry.msgid))
        for text in translations(entry):
            got = set(placeholders(text, python_format))
            if not needed <= got or not got <= wanted:
                problems.append(f"{entry.msgid!r}: placeholders {sorted(got)} ≠ {sorted(wanted)}")
            if Counter(HTML_TAG.findall(text)) != tags:
                problems.append(f"{entry.msgid!r}: HTML tags differ in {text!r}")
            if python_format:
                # The translation must survive the % operator the code applies to it.
                names = {p[2:-2] for p in got if p.startswith("%(")}
                try:
                    text % dict.fromkeys(names, "x") if names else text % ()
                except (TypeError, ValueError, KeyError) as exc:
                    problems.append(f"{entry.msgid!r}: {text!r} breaks % formatting: {exc}")
    assert problems == [], "\n".join(problems)


# -- (c) the committed .mo matches the .po ------------------------------------------------------


@catalog_params
def test_committed_mo_is_compiled_from_the_po(name):
    po = load(name)
    mo_path = CATALOGS[name].with_suffix(".mo")
    assert mo_path.exists(), f"{mo_path} is missing: run msgfmt -o django.mo django.po"
    compiled = polib.mofile(po.to_binary())
    committed = polib.mofile(str(mo_path))
    assert messages(committed) == messages(compiled), (
        f"{mo_path.relative_to(ROOT)} is out of date: recompile it from the .po "
        "(msgfmt --check -o django.mo django.po, or manage.py compilemessages)"
    )
    for header in ("Language", "Plural-Forms", "Content-Type"):
        assert committed.metadata.get(header) == po.metadata.get(header), header


# -- (d) nothing marked in the code is missing from the catalogs -------------------------------


def _copy_tree(destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.mo")
    for folder in ("hidream_models", "shop_demo", "templates"):
        shutil.copytree(ROOT / folder, destination / folder, ignore=ignore)
    shutil.copy2(ROOT / "manage.py", destination / "manage.py")


def _makemessages(root: Path, cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "DJANGO_SETTINGS_MODULE": "shop_demo.settings",
        "DEBUG": "true",
    }
    # -P: don't put the working directory (an app folder full of module names) on sys.path.
    command = [sys.executable, "-P", "-m", "django", "makemessages", "-l", "zh_Hans"]
    result = subprocess.run(
        [*command, "--no-obsolete", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(
    not (shutil.which("xgettext") and shutil.which("msgmerge")),
    reason="GNU gettext (xgettext, msgmerge) is not installed",
)
def test_makemessages_finds_no_new_strings(tmp_path):
    """Run both makemessages commands on a copy of the tree: every msgid must be translated."""
    _copy_tree(tmp_path)
    _makemessages(tmp_path, tmp_path / "hidream_models", "--ignore", "simulator/*")
    _makemessages(
        tmp_path,
        tmp_path,
        "--ignore",
        "hidream_models/*",
        "--ignore",
        ".venv/*",
        "--ignore",
        "tests/*",
        "--ignore",
        "var/*",
    )
    problems = []
    for name, committed_path in CATALOGS.items():
        fresh = polib.pofile(str(tmp_path / committed_path.relative_to(ROOT)))
        committed = {key(e) for e in load(name)}
        for entry in fresh:
            if entry.obsolete:
                continue
            if key(entry) not in committed:
                problems.append(f"{name}: new string {entry.msgid!r} ({entry.occurrences[:1]})")
            elif "fuzzy" in entry.flags or not entry.translated():
                problems.append(f"{name}: {entry.msgid!r} lost its translation")
    assert problems == [], (
        "Strings marked for translation are missing from the catalogs; run makemessages "
        "(see this module's docstring), translate them and recompile:\n" + "\n".join(problems)
    )


# -- (e) the pages render in Chinese -----------------------------------------------------------


@pytest.fixture
def zh_client(client, admin_user):
    client.force_login(admin_user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = ZH
    return client


def test_django_uses_the_committed_translations():
    for msgid in ("Generate model images with HiDream", "Review generated pictures", "Queued"):
        assert zh(msgid) == msgstr_of(msgid)


@pytest.mark.django_db
def test_product_changelist_offers_the_action_in_chinese(zh_client, make_product):
    make_product(with_image=False)
    response = zh_client.get(reverse("admin:catalog_product_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'lang="zh-hans"' in html
    assert zh("Generate model images with HiDream") in html
    assert "Generate model images with HiDream" not in html


@pytest.mark.django_db
def test_task_changelist_is_in_chinese(zh_client):
    from hidream_models.models import GenerationMode, ModelImageTask

    ModelImageTask.objects.create(
        product_label="Linen dress", mode=GenerationMode.PROMPT, prompt="A model in a garden"
    )
    response = zh_client.get(reverse("admin:hidream_models_modelimagetask_changelist"))
    assert response.status_code == 200
    html = response.content.decode()
    for msgid in ("Queued", "Refresh from HiDream", "Retry failed tasks", "Thumbnails"):
        assert zh(msgid) in html, msgid
    assert "Refresh from HiDream" not in html


@pytest.mark.django_db
def test_review_queue_is_in_chinese(zh_client):
    response = zh_client.get(reverse("admin:hidream_models_review_queue"))
    assert response.status_code == 200
    html = response.content.decode()
    assert zh("Review generated pictures") in html
    assert zh("Nothing to review. New pictures appear here once they are stored.") in html
    assert "Nothing to review" not in html


@pytest.mark.django_db
def test_storefront_is_in_chinese(client, make_product):
    make_product(with_image=False, name="Linen dress")
    response = client.get("/", HTTP_ACCEPT_LANGUAGE=ZH)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'lang="zh-hans"' in html
    assert zh("Demo shop") in html
    assert zh("Products") in html
    assert "Demo shop" not in html
