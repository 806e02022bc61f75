"""The annotator page in headless Chromium: paint a stroke, save, check the PNG, undo."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from confseg.data import DatasetWriter
from confseg.io.images import read_image

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.browser

H, W = 48, 64


def _need_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not installed")
    pytest.importorskip("playwright.sync_api")
    pytest.importorskip("uvicorn")


@contextlib.contextmanager
def running_server(root: Path) -> Iterator[str]:
    """Serve the annotator with uvicorn in a thread on a free loopback port."""
    import uvicorn

    from confseg.annotator import create_app

    app = create_app(root, allowed_hosts=["127.0.0.1"], autosave_seconds=1.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("annotator server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_saved(page, timeout: float = 10.0) -> None:
    """Poll the page's save state (kept under the page's CSP: no string eval)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = page.evaluate("() => document.body.dataset.saveState")
        if state == "saved":
            return
        if state == "error":
            raise AssertionError(page.inner_text("#save-state"))
        time.sleep(0.05)
    raise AssertionError(f"not saved: {page.inner_text('#save-state')}")


def segment_distance(w: int, h: int, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Distance of every pixel centre to the segment a-b (image coordinates)."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    (x0, y0), (x1, y1) = a, b
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / (dx * dx + dy * dy), 0, 1)
    return np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy))


def stroke(page, y: float, x0: float, x1: float) -> tuple[np.ndarray, float]:
    """Drag a horizontal brush stroke at image row ``y`` from ``x0`` to ``x1``.

    The mouse moves between whole page pixels; the pixels under the stroke are computed
    from the page's canvas -> image transform. Returns (distance of each pixel centre to
    the stroke, brush radius).
    """
    size = page.evaluate("() => window.annotator.S.size")
    s, tx, ty, left, top = page.evaluate("""() => {
        const v = window.annotator.view;
        const r = document.getElementById('view').getBoundingClientRect();
        return [v.s, v.tx, v.ty, r.left, r.top];
    }""")
    ax, ay = round(left + tx + x0 * s), round(top + ty + y * s)
    bx = round(left + tx + x1 * s)
    page.mouse.move(ax, ay)
    page.mouse.down()
    page.mouse.move(bx, ay, steps=12)
    page.mouse.up()
    img_a = ((ax - left - tx) / s, (ay - top - ty) / s)
    img_b = ((bx - left - tx) / s, (ay - top - ty) / s)
    return segment_distance(W, H, img_a, img_b), size / 2


def assert_strokes(got: np.ndarray, strokes: list[tuple[np.ndarray, float, int]]) -> None:
    """Pixels under each stroke hold its value, all others 0 (boundary ties ignored)."""
    want = np.zeros((H, W), np.uint8)
    sure = np.ones((H, W), bool)
    for dist, r, value in strokes:
        want[dist <= r] = value
        sure &= np.abs(dist - r) > 1e-3
    assert np.array_equal(got[sure], want[sure])
    for _, _, value in strokes:
        assert (got == value).sum() > 60


def layer_of(page, cls: str) -> np.ndarray:
    vals = page.evaluate(f"() => Array.from(window.annotator.S.layers[{cls!r}])")
    return np.asarray(vals, np.uint8).reshape(H, W)


def test_paint_save_undo_and_two_tabs_in_browser(tmp_path: Path) -> None:
    _need_browser()
    from playwright.sync_api import sync_playwright

    root = tmp_path / "ds"
    rng = np.random.default_rng(1)
    existing = np.zeros((H, W), np.float32)
    existing[2:6, 2:10] = 0.4
    with DatasetWriter(root, name="browser", classes=["a", "b"]) as w:
        w.add(
            item_id="x1",
            patient="p1",
            image=rng.integers(0, 256, (H, W), dtype=np.uint8),
            confidence={"a": existing},
        )
        w.add(item_id="x2", patient="p2", image=rng.integers(0, 256, (H, W), dtype=np.uint8))
    b_png = root / "confidence/b/x1.png"
    errors: list[str] = []
    with running_server(root) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            ctx = browser.new_context(viewport={"width": 1200, "height": 800})
            ctx.on("weberror", lambda e: errors.append(str(e.error)))
            ctx.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page = ctx.new_page()
            page.goto(url)
            wait_saved(page)
            assert page.inner_text("#item-title").startswith("x1")
            page.click("#classes li[data-cls='b'] .cls-name")
            page.keyboard.press("3")
            assert "60 % · probable" in page.inner_text("#level-desc")
            assert "More likely than not" in page.inner_text("#level-desc")

            s1 = (*stroke(page, 18.2, 12.3, 50.6), 60)
            page.keyboard.press("Control+s")
            wait_saved(page)
            got = read_image(b_png)
            assert got.dtype == np.uint8 and got.shape == (H, W)
            assert_strokes(got, [s1])
            # class a was not touched (and its 40 % region survived)
            a_map = read_image(root / "confidence/a/x1.png")
            assert (a_map[2:6, 2:10] == 40).all() and a_map.sum() == 40 * 32

            page.keyboard.press("Control+z")
            page.keyboard.press("Control+s")
            wait_saved(page)
            assert not read_image(b_png).any()
            assert len(list((root / ".history/confidence/b").glob("x1.*.png"))) == 2
            page.keyboard.press("Control+Shift+z")  # redo brings the stroke back
            page.click("#save")
            wait_saved(page)
            assert np.array_equal(read_image(b_png), got)

            # a second tab on the same item saves a stroke; the first tab's base is now stale
            tab2 = ctx.new_page()
            tab2.goto(url + "#x1")
            wait_saved(tab2)
            tab2.click("#classes li[data-cls='b'] .cls-name")
            tab2.keyboard.press("5")
            s2 = (*stroke(tab2, 6.4, 20.2, 40.7), 100)
            tab2.keyboard.press("Control+s")
            wait_saved(tab2)
            page.bring_to_front()
            page.keyboard.press("1")
            s3 = (*stroke(page, 30.3, 8.1, 30.9), 20)
            page.keyboard.press("Control+s")
            wait_saved(page)
            assert "merged" in page.inner_text("#save-state")
            assert_strokes(read_image(b_png), [s1, s2, s3])
            assert np.array_equal(layer_of(page, "b"), read_image(b_png))  # tab 1 refreshed
            # autosave (1 s idle here) from the now stale second tab
            tab2.bring_to_front()
            s4 = (*stroke(tab2, 42.5, 30.2, 58.8), 100)
            wait_saved(tab2)
            assert_strokes(read_image(b_png), [s1, s2, s3, s4])

            page.keyboard.press("n")  # next item
            page.wait_for_selector("#items li.current >> text=x2")
            wait_saved(page)
            assert page.inner_text("#item-title").startswith("x2")
        finally:
            browser.close()
    assert errors == []
