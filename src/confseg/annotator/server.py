"""Run the annotator with uvicorn: ``confseg annotate DATASET``."""

from __future__ import annotations

import ipaddress
import os
import sys
import threading
import webbrowser

from confseg.annotator.app import create_app
from confseg.annotator.preannotate import PredictFn
from confseg.io.optional import require

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def app_url(host: str, port: int) -> str:
    """The URL to open for a bound host and port."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def serve(
    dataset_root: str | os.PathLike[str],
    *,
    rater: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    model_run: str | os.PathLike[str] | None = None,
    open_browser: bool = False,
    predict_fn: PredictFn | None = None,
) -> None:
    """Serve the annotator until interrupted.

    Binds to the loopback address unless ``host`` says otherwise, in which case a warning
    is printed: the tool has no login, so anyone who can reach the port can edit the maps.

    Args:
        dataset_root: The dataset folder.
        rater: Annotate as this rater.
        host: Address to bind.
        port: Port to bind.
        model_run: Training run for pre-annotation.
        open_browser: Open the page in the default browser.
        predict_fn: Pre-annotation model (overrides ``model_run``).

    Raises:
        ConfsegError: bad dataset, rater name or model run.
        MissingExtraError: uvicorn is not installed.
    """
    uvicorn = require("uvicorn", "annotator", purpose="the annotator")

    loopback = is_loopback(host)
    allowed = None if not loopback else ["127.0.0.1", "localhost", "[::1]", host.lower()]
    app = create_app(
        dataset_root, rater=rater, model_run=model_run, predict_fn=predict_fn, allowed_hosts=allowed
    )
    url = app_url(host, port)
    if not loopback:
        print(
            f"WARNING: serving on {host}, reachable from other machines; the annotator has "
            "no login, so anyone who can reach this port can read and change the maps.",
            file=sys.stderr,
        )
    who = f" as rater {rater!r}" if rater else ""
    print(f"confseg annotator{who}: {url}  (Ctrl+C to stop)", flush=True)
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
