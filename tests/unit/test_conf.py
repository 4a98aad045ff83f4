"""The ``HIDREAM_*`` settings (hidream_models.conf) and the system checks built on them."""

from __future__ import annotations

import pytest
from django.core.checks import Error, Info, Warning, run_checks
from django.core.exceptions import ImproperlyConfigured

from hidream_models.checks import _check_sqlite_files, check_hidream_settings
from hidream_models.conf import SETTINGS, hidream_settings

SECRET = "tok-9f8e7d6c5b4a-very-secret"


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Deleting a setting with pytest-django sends no ``setting_changed``: start and end clean."""
    hidream_settings.reload()
    yield
    hidream_settings.reload()


def check_ids(messages):
    return [m.id for m in messages]


# -- defaults ------------------------------------------------------------------------------


def test_defaults_when_nothing_is_set(settings):
    for name in SETTINGS:
        if hasattr(settings, f"HIDREAM_{name}"):
            delattr(settings, f"HIDREAM_{name}")
    hidream_settings.reload()

    # The documented facts (API-REFERENCE §1 and §2).
    assert hidream_settings.BASE_URL == "https://hidreamai.com"
    assert hidream_settings.SUBMIT_PATH == "/api-pub/ec/v3/image/model/async"
    assert hidream_settings.RESULT_PATH == "/api-pub/ec/v3/image/model/async/results"
    assert hidream_settings.HUMAN_TEMPLATES_PATH == "/api-pub/ec/v3/template/model/human"
    assert hidream_settings.SCENE_TEMPLATES_PATH == "/api-pub/ec/v3/template/model/scene"
    assert hidream_settings.API_TOKEN == ""
    assert hidream_settings.CALLBACK_BASE_URL == ""
    assert hidream_settings.SOURCE_IMAGE_MODE == "base64"
    assert hidream_settings.ALLOWED_RESULT_HOSTS == ("hidreamai.com", ".hidreamai.com")
    # Every other default is the one declared in the table.
    for name, spec in SETTINGS.items():
        value = getattr(hidream_settings, name)
        if isinstance(spec.default, list):
            assert value == tuple(spec.default), name
        else:
            assert value == spec.default, name
            assert isinstance(value, spec.kind), name


def test_none_means_the_default(settings):
    settings.HIDREAM_POLL_INTERVAL = None
    settings.HIDREAM_BASE_URL = None
    poll_interval = hidream_settings.POLL_INTERVAL
    assert poll_interval == SETTINGS["POLL_INTERVAL"].default
    assert hidream_settings.BASE_URL == "https://hidreamai.com"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NOT_A_SETTING"):
        _ = hidream_settings.NOT_A_SETTING


# -- overrides reload the cache --------------------------------------------------------------


def test_override_through_settings_fixture_is_seen_without_manual_reload(settings):
    before = hidream_settings.POLL_INTERVAL  # cached now
    settings.HIDREAM_POLL_INTERVAL = before + 12.5
    after = hidream_settings.POLL_INTERVAL
    assert after == before + 12.5
    settings.HIDREAM_BASE_URL = "http://127.0.0.1:8765/"
    assert hidream_settings.BASE_URL == "http://127.0.0.1:8765"  # trailing slash dropped
    settings.HIDREAM_ALLOWED_RESULT_HOSTS = ["CDN.Example.COM", ".Img.Example.com"]
    assert hidream_settings.ALLOWED_RESULT_HOSTS == ("cdn.example.com", ".img.example.com")


def test_ints_are_accepted_for_float_settings(settings):
    settings.HIDREAM_CONNECT_TIMEOUT = 3
    assert hidream_settings.CONNECT_TIMEOUT == 3


# -- wrong values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CONNECT_TIMEOUT", "5"),
        ("READ_TIMEOUT", [30]),
        ("MAX_ATTEMPTS", 2.5),
        ("MAX_ATTEMPTS", True),
        ("MAX_DOWNLOAD_BYTES", "30MB"),
        ("ALLOWED_RESULT_HOSTS", "hidreamai.com"),
        ("BASE_URL", 443),
        ("SOURCE_IMAGE_MODE", ["url"]),
        ("POLL_INTERVAL", False),
    ],
)
def test_wrong_type_raises_improperly_configured_naming_the_setting(settings, name, value):
    setattr(settings, f"HIDREAM_{name}", value)
    with pytest.raises(ImproperlyConfigured) as info:
        getattr(hidream_settings, name)
    text = str(info.value)
    assert f"HIDREAM_{name}" in text
    assert type(value).__name__ in text


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAX_ATTEMPTS", 0), ("POLL_INTERVAL", 0.5), ("MAX_DOWNLOAD_BYTES", 10), ("READ_TIMEOUT", 0)],
)
def test_below_minimum_is_refused(settings, name, value):
    setattr(settings, f"HIDREAM_{name}", value)
    with pytest.raises(ImproperlyConfigured, match=f"HIDREAM_{name} must be at least"):
        getattr(hidream_settings, name)


@pytest.mark.parametrize("value", [123456789, 12.5, b"tok-9f8e7d6c5b4a-very-secret", [SECRET]])
def test_token_of_wrong_type_is_never_shown(settings, value):
    settings.HIDREAM_API_TOKEN = value
    with pytest.raises(ImproperlyConfigured) as info:
        _ = hidream_settings.API_TOKEN
    text = str(info.value)
    assert "HIDREAM_API_TOKEN" in text
    assert str(value) not in text
    assert repr(value) not in text
    assert "tok-9f8e7d6c5b4a" not in text


def test_token_is_never_in_repr(settings):
    settings.HIDREAM_API_TOKEN = SECRET
    assert hidream_settings.API_TOKEN == SECRET  # read and cached
    assert SECRET not in repr(hidream_settings)
    assert SECRET not in str(hidream_settings)


def test_require_token_returns_the_token_stripped(settings):
    settings.HIDREAM_API_TOKEN = f"  {SECRET}\n"
    assert hidream_settings.require_token() == SECRET


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_require_token_without_token_says_how_to_fix_it(settings, value):
    settings.HIDREAM_API_TOKEN = value
    with pytest.raises(ImproperlyConfigured) as info:
        hidream_settings.require_token()
    text = str(info.value)
    assert "HIDREAM_API_TOKEN" in text
    assert "not set" in text
    assert "console" in text  # where to get one


@pytest.mark.parametrize("mode", ["base64", "url"])
def test_source_image_mode_choices_are_accepted(settings, mode):
    settings.HIDREAM_SOURCE_IMAGE_MODE = mode
    read = hidream_settings.SOURCE_IMAGE_MODE
    assert read == mode


@pytest.mark.parametrize("mode", ["file", "URL", "", "s3"])
def test_source_image_mode_outside_choices_is_refused(settings, mode):
    settings.HIDREAM_SOURCE_IMAGE_MODE = mode
    with pytest.raises(ImproperlyConfigured) as info:
        _ = hidream_settings.SOURCE_IMAGE_MODE
    text = str(info.value)
    assert "HIDREAM_SOURCE_IMAGE_MODE" in text
    assert "base64" in text and "url" in text


@pytest.mark.parametrize(
    "url", ["ftp://hidreamai.com", "hidreamai.com", "//hidreamai.com", "https://", "file:///x"]
)
def test_base_url_must_be_http(settings, url):
    settings.HIDREAM_BASE_URL = url
    with pytest.raises(ImproperlyConfigured, match="HIDREAM_BASE_URL must be an absolute http"):
        _ = hidream_settings.BASE_URL


def test_callback_base_url_may_be_empty_but_not_relative(settings):
    settings.HIDREAM_CALLBACK_BASE_URL = ""
    assert hidream_settings.CALLBACK_BASE_URL == ""
    settings.HIDREAM_CALLBACK_BASE_URL = "shop.example.com"
    with pytest.raises(ImproperlyConfigured, match="HIDREAM_CALLBACK_BASE_URL"):
        _ = hidream_settings.CALLBACK_BASE_URL


# -- system checks ---------------------------------------------------------------------------


@pytest.fixture
def good_config(settings, tmp_path):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    settings.DEBUG = False
    settings.HIDREAM_API_TOKEN = SECRET
    settings.HIDREAM_CALLBACK_BASE_URL = "https://shop.example.com"
    return settings


def test_a_good_configuration_has_no_warnings_or_errors(good_config):
    assert check_hidream_settings() == []


def test_w001_when_token_is_empty(good_config):
    good_config.HIDREAM_API_TOKEN = "  "
    messages = check_hidream_settings()
    assert check_ids(messages) == ["hidream_models.W001"]
    assert isinstance(messages[0], Warning)
    assert "HIDREAM_API_TOKEN" in messages[0].msg
    assert messages[0].hint


def test_w001_through_django_run_checks(good_config):
    good_config.HIDREAM_API_TOKEN = ""
    ids = check_ids(run_checks(tags=["compatibility"]))
    assert "hidream_models.W001" in ids


def test_w002_when_callback_is_http_and_debug_is_off(good_config):
    good_config.HIDREAM_CALLBACK_BASE_URL = "http://shop.example.com"
    messages = check_hidream_settings()
    assert check_ids(messages) == ["hidream_models.W002"]
    assert "HIDREAM_CALLBACK_BASE_URL" in messages[0].msg


def test_no_w002_with_debug_on(good_config):
    good_config.HIDREAM_CALLBACK_BASE_URL = "http://127.0.0.1:8000"
    good_config.DEBUG = True
    assert "hidream_models.W002" not in check_ids(check_hidream_settings())


@pytest.mark.parametrize("backend", ["locmem.LocMemCache", "dummy.DummyCache"])
def test_w003_when_the_throttle_counts_in_a_per_process_cache(good_config, backend):
    good_config.CACHES = {
        **good_config.CACHES,
        "local": {"BACKEND": f"django.core.cache.backends.{backend}"},
    }
    good_config.HIDREAM_THROTTLE_CACHE = "local"
    messages = check_hidream_settings()
    assert check_ids(messages) == ["hidream_models.W003"]
    assert "'local'" in messages[0].msg and "HIDREAM_THROTTLE_CACHE" in messages[0].hint
    good_config.HIDREAM_API_CREATE_RATE = ""  # no throttle, nothing to count
    assert check_hidream_settings() == []


def _sqlite(name, **options):
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": name, "OPTIONS": options}


def test_w004_when_a_sqlite_file_runs_without_wal_and_immediate(tmp_path):
    messages = _check_sqlite_files({"shop": _sqlite(str(tmp_path / "shop.sqlite3"))})
    assert check_ids(messages) == ["hidream_models.W004"]
    assert "'shop'" in messages[0].msg and "WAL and IMMEDIATE" in messages[0].msg
    assert "PostgreSQL" in messages[0].hint and "journal_mode=WAL" in messages[0].hint


def test_w004_is_part_of_the_apps_checks(good_config, monkeypatch, tmp_path):
    from hidream_models import checks

    unsafe = {"shop": _sqlite(str(tmp_path / "shop.sqlite3"))}
    monkeypatch.setattr(checks, "_check_sqlite_files", lambda: _check_sqlite_files(unsafe))
    assert check_ids(check_hidream_settings()) == ["hidream_models.W004"]


@pytest.mark.parametrize(
    "database",
    [
        _sqlite(
            "/tmp/shop.sqlite3",
            init_command="PRAGMA journal_mode = WAL;",
            transaction_mode="IMMEDIATE",
        ),
        _sqlite(":memory:"),
        _sqlite("file:memorydb?mode=memory&cache=shared"),
    ],
    ids=["wal-and-immediate", "memory", "memory-uri"],
)
def test_no_w004_for_a_well_set_sqlite_file_or_memory(database):
    assert _check_sqlite_files({"shop": database}) == []


def test_the_demo_shares_its_throttle_cache_between_processes():
    from shop_demo import settings as demo

    backend = demo.CACHES["default"]["BACKEND"]
    assert backend == "django.core.cache.backends.filebased.FileBasedCache"


def test_i001_when_callback_is_empty(good_config):
    good_config.HIDREAM_CALLBACK_BASE_URL = ""
    messages = check_hidream_settings()
    assert check_ids(messages) == ["hidream_models.I001"]
    assert isinstance(messages[0], Info)


@pytest.mark.parametrize(
    ("name", "value"),
    [("MAX_ATTEMPTS", "five"), ("BASE_URL", "hidreamai.com"), ("SOURCE_IMAGE_MODE", "ftp")],
)
def test_e001_for_a_broken_setting(good_config, name, value):
    setattr(good_config, f"HIDREAM_{name}", value)
    messages = check_hidream_settings()
    assert check_ids(messages) == ["hidream_models.E001"]
    assert isinstance(messages[0], Error)
    assert f"HIDREAM_{name}" in messages[0].msg
    ids = check_ids(run_checks(tags=["compatibility"]))
    assert "hidream_models.E001" in ids


def test_e001_for_a_broken_token_hides_the_value(good_config):
    good_config.HIDREAM_API_TOKEN = 987654321
    messages = check_hidream_settings()
    assert check_ids(messages) == ["hidream_models.E001"]
    assert "987654321" not in messages[0].msg
