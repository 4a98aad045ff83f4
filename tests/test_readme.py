"""The README's settings table says what the code does."""

from pathlib import Path

from hidream_models.conf import SETTINGS

README = Path(__file__).resolve().parent.parent / "README.md"


def _table_rows():
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `HIDREAM_"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    return rows


def _shown(default):
    if default == "":
        return "(empty)"
    if isinstance(default, list | tuple):
        return f"`{', '.join(default)}`"
    if isinstance(default, dict):
        return f"`{default}`"
    return f"`{default}`"


def test_every_setting_is_documented_with_its_default_and_meaning():
    rows = _table_rows()
    assert set(rows) == {f"HIDREAM_{name}" for name in SETTINGS}
    for name, spec in SETTINGS.items():
        default, meaning = rows[f"HIDREAM_{name}"]
        assert default == _shown(spec.default), name
        assert meaning == spec.doc, name
