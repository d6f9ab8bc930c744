"""#19 item 7: Textual's and plotext's private names are reached through ``backend.compat`` only, each
with a version check and a fallback that keeps the app working when the framework moves on."""

from __future__ import annotations

import re
from pathlib import Path

from backend import compat

REPO = Path(__file__).resolve().parent.parent
PRIVATE = re.compile(r"_handle_exception|_css_update_count|textual\.widgets\._footer|plotext\._utility|"
                     r"plotext\s+import\s+_utility")


def test_no_private_framework_name_outside_compat() -> None:
    offenders = [str(p.relative_to(REPO)) for folder in ("greentui", "backend") for p in (REPO / folder).rglob("*.py")
                 if p.name != "compat.py" and PRIVATE.search(p.read_text())]
    assert offenders == []


def test_the_installed_versions_are_the_checked_ones() -> None:
    assert compat.checked("textual", *compat.TEXTUAL_CHECKED)
    assert compat.checked("plotext", *compat.PLOTEXT_CHECKED)
    assert compat.footer_parts() is not None
    assert compat.stable_plotext_ticks()
    import plotext._utility
    assert plotext._utility.no_duplicates([(3, "c"), (1, "a"), (3, "c"), (2, "b")]) == [(3, "c"), (1, "a"), (2, "b")]


def test_each_textual_shim_falls_back_when_its_name_is_gone(monkeypatch) -> None:
    class Bare:  # an app and a screen of a Textual without the private names
        pass
    assert compat.route_uncaught_errors(Bare(), lambda error: True) is False
    assert compat.start_at_app_css_generation(Bare(), Bare()) is False
    monkeypatch.setattr(compat, "checked", lambda *a: False)  # a Textual outside the checked range
    assert compat.footer_parts() is None


async def test_the_footer_is_textuals_own_when_its_parts_moved(tmp_path: Path, monkeypatch) -> None:
    from textual.widgets import Footer

    from greentui.app import GreentuiApp
    from greentui.widgets import keys

    monkeypatch.setattr(keys, "footer_parts", lambda: None)
    app = GreentuiApp(tmp_path, manage_runner=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        footer = app.screen.query_one(keys.KeyFooter)
        assert isinstance(footer, Footer) and footer.children  # Textual's keys, in Textual's order
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"


def test_an_uncaught_store_error_goes_through_the_hook() -> None:
    from backend.errors import GreentuiError

    seen = []

    class App:
        def _handle_exception(self, error):
            seen.append(("textual", error))

    app = App()
    assert compat.route_uncaught_errors(app, lambda error: isinstance(error, GreentuiError) and not seen.append(
        ("ours", error)))
    app._handle_exception(GreentuiError("disk full"))
    app._handle_exception(ValueError("a bug"))
    assert [who for who, _ in seen] == ["ours", "textual"]
