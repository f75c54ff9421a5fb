"""tests/conftest.py schedules the longest test files first: every file it names still exists (a renamed file would
silently fall back to its alphabetical place, at the end of the run)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_longest_first_file_exists(request):
    conftest = request.config.pluginmanager.get_plugin(str(ROOT / "tests" / "conftest.py"))
    missing = [name for name in conftest.LONGEST_FILES_FIRST if not (ROOT / name).is_file()]
    assert not missing, f"tests/conftest.py LONGEST_FILES_FIRST names files that do not exist: {missing}"
