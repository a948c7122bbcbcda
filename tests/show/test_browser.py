"""The `vsd show` page in a real headless Chromium: it loads clean, images decode, filters hide."""

from __future__ import annotations

from tests.fixtures.history import BROKEN, HOSTILE_PAIR
from vsd.cli import main


def test_the_page_loads_clean_renders_images_and_filters(chromium, two_nights, tmp_path):
    assert main(["show", two_nights.output, "--out", str(tmp_path / "site")]) == 0
    problems: list[str] = []
    page = chromium.new_page(viewport={"width": 1280, "height": 1000})
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "request",
        lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(f"request {r.url}"),
    )
    try:
        page.goto((tmp_path / "site" / "index.html").as_uri())
        page.wait_for_load_state("load")
        assert problems == []
        rows, readable = two_nights.rows, two_nights.rows - len(BROKEN)
        assert page.locator("figure.row").count() == rows
        sizes = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        assert len(sizes) == readable and all(done and width > 0 for done, width in sizes)
        # Boxes sit on the images: two per readable pair (subject red, object green; none at scene level).
        assert (
            page.locator(".thumb .box.subj").count()
            == readable - 1
            == page.locator(".thumb .box.obj").count()
        )
        red = page.locator(".thumb .box.subj").first.evaluate("e => getComputedStyle(e).borderTopColor")
        assert red == "rgb(238, 0, 0)"
        assert page.locator("#f-count").inner_text() == f"{rows} of {rows} shown"

        page.select_option("#f-status", "error")
        assert page.locator("figure.row:visible").count() == len(BROKEN)
        assert page.locator("#f-count").inner_text() == f"{len(BROKEN)} of {rows} shown"
        assert page.evaluate("location.hash") == "#status=error"  # the view can be linked to
        page.select_option("#f-status", "")
        page.fill("#f-text", "onerror")  # free text finds the hostile names, shown as text
        visible = page.locator("figure.row:visible")
        assert visible.count() == 1 and HOSTILE_PAIR["subject"] in visible.inner_text()
        page.fill("#f-text", "")
        page.select_option("#f-flag", "truncated")
        truncated = page.locator("figure.row:visible").count()
        assert 0 < truncated < rows and page.evaluate("location.hash") == "#flag=truncated"
        # Nothing the rows carried ran or became markup.
        assert page.evaluate("window.__pwned") is None
        assert page.locator('img[src="x"]').count() == 0 and page.locator("script").count() == 1
        page.select_option("#f-flag", "")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=False)
        assert problems == [] and page.evaluate("location.hash") == ""
    finally:
        page.close()
    linked = chromium.new_page()
    try:  # a link with filters opens filtered; a mangled one is ignored, not an error
        linked.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        linked.goto((tmp_path / "site" / "index.html").as_uri() + "#flag=truncated&status=ok&text=%E0%A4%A")
        assert linked.locator("figure.row:visible").count() == truncated
        assert linked.locator("#f-status").input_value() == "ok" and problems == []
    finally:
        linked.close()
