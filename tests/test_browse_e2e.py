"""End-to-end tests of ``priming browse``: a real server, driven in headless Chromium by
Playwright, and the CLI server process started and stopped.

Chromium comes from Debian (``apt-get install -y chromium``); Playwright's own browser
download is not used. Without either, the browser tests skip and say why.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
pq = pytest.importorskip("pyarrow.parquet")

from tests.test_browse_fixtures import (  # noqa: E402
    N_DOG,
    dropped_rows,
    make_real_run,
    pool_rows,
    write_handmade_run,
)

CHROMIUM = os.environ.get("PRIMING_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, timeout: float = 20.0, proc=None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up in {timeout}s")


class ThreadServer:
    """uvicorn serving an app in a thread of this process (stopped with should_exit)."""

    def __init__(self, app):
        self.port = free_port()
        cfg = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(cfg)
        self.server.install_signal_handlers = lambda: None
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        wait_up(self.url + "/")
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def browser():
    pw_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    with pw_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    ctx.close()
    assert errors == []  # no script errors, no CSP violations


def row_ids(page) -> list[int]:
    return [
        int(x)
        for x in page.eval_on_selector_all(
            "#items tbody tr[data-row-id]", "els => els.map(e => e.dataset.rowId)"
        )
    ]


def test_handmade_run_in_chromium(tmp_path, page):
    from priming.browse import create_app

    run = write_handmade_run(tmp_path / "run")
    with ThreadServer(create_app(run)) as srv:
        page.goto(srv.url + "/")
        assert page.title().startswith("run")
        assert "validation" in page.inner_text("#alpha")
        dog_row = page.locator('#classes tr[data-class="dog"]')
        assert dog_row.locator("td.size").inner_text() == str(N_DOG)
        # click into a class, page through with the pager and the keyboard
        dog_row.locator("a.class-link").click()
        page.wait_for_url("**/class?name=dog")
        want = [r[1] for r in pool_rows() if r[0] == "dog"]
        seen = row_ids(page)
        page.locator('nav.pager a[rel="next"]').first.click()
        page.wait_for_url("**page=2**")
        seen += row_ids(page)
        page.keyboard.press("ArrowRight")
        page.wait_for_url("**page=3**")
        seen += row_ids(page)
        assert seen == want
        assert page.locator('nav.pager a[rel="next"]').count() == 0
        # dropped rows of the class, as recorded in steps.parquet
        page.click("#tab-dropped")
        page.wait_for_url("**view=dropped**")
        reasons = page.eval_on_selector_all("td.reason", "els => els.map(e => e.innerText)")
        assert reasons == [r[3] for r in dropped_rows() if r[1] == "dog"][:50]
        # search from the header box ("/" focuses it)
        page.keyboard.press("/")
        page.keyboard.type("beach")
        page.keyboard.press("Enter")
        page.wait_for_url("**/search?q=beach**")
        caps = page.eval_on_selector_all("td.caption", "els => els.map(e => e.innerText)")
        assert caps == [r[2] for r in pool_rows() if "beach" in r[2]]
        # the local thumbnail loads; the misclassified items show their top-3
        page.goto(srv.url + "/class?name=cat")
        img = page.locator("td.thumb img")
        assert img.count() == 1
        assert page.evaluate("() => document.querySelector('td.thumb img').naturalWidth") == 4
        page.goto(srv.url + "/class?name=bird&view=errors")
        assert page.locator("td.id").all_inner_texts() == ["e6", "e7"]
        page.screenshot(path=str(tmp_path / "errors.png"))
        assert (tmp_path / "errors.png").stat().st_size > 1000


def test_real_run_in_chromium(tmp_path, page):
    from priming.browse import create_app

    run, corpus, res = make_real_run(tmp_path)
    m = json.loads((run / "metrics.json").read_text())
    pool = pq.read_table(run / "pool" / "pool.parquet").to_pylist()
    with ThreadServer(create_app(run)) as srv:
        page.goto(srv.url + "/")
        heads = page.locator("#heads tbody tr td:first-child").all_inner_texts()
        assert heads == list(m["eval"])
        sizes = {
            r.get_attribute("data-class"): int(r.locator("td.size").inner_text())
            for r in page.locator("#classes tbody tr").all()
        }
        assert sizes == m["pool"]["per_class"]
        page.click('#classes tr[data-class="banana"] a.class-link')
        page.wait_for_url("**name=banana")
        caps = page.eval_on_selector_all("td.caption", "els => els.map(e => e.innerText)")
        assert caps == [r["caption"] for r in pool if r["class_name"] == "banana"][:50]
        page.fill('nav.tabs input[name="q"]', "ripe")
        page.press('nav.tabs input[name="q"]', "Enter")
        page.wait_for_url("**class=banana**")
        caps = page.eval_on_selector_all("td.caption", "els => els.map(e => e.innerText)")
        want = [
            r["caption"] for r in pool if r["class_name"] == "banana" and "ripe" in r["caption"]
        ]
        assert caps == want[:50] and caps
        page.goto(srv.url + "/")
        page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
        assert (tmp_path / "overview.png").stat().st_size > 1000
    # the corpus folder: caption search
    with ThreadServer(create_app(corpus)) as srv:
        page.goto(srv.url + "/")
        page.fill("#q", "cherry pie")
        page.press("#q", "Enter")
        page.wait_for_url("**q=cherry+pie**")
        caps = page.eval_on_selector_all("td.caption", "els => els.map(e => e.innerText)")
        assert caps and all({"cherry", "pie"} <= set(c.split()) for c in caps)


# ------------------------------------------------------------------- the CLI process
_LAUNCH = (
    "import argparse, sys\n"
    "from priming.cli import browse\n"
    "p = argparse.ArgumentParser(); sub = p.add_subparsers()\n"
    "browse.register(sub)\n"
    "a = p.parse_args(['browse'] + sys.argv[1:])\n"
    "sys.exit(a.func(a))\n"
)


def launch(path, port):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-c", _LAUNCH, str(path), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_server_starts_and_stops_cleanly(tmp_path, sig):
    run = write_handmade_run(tmp_path / "run")
    port = free_port()
    proc = launch(run, port)
    try:
        wait_up(f"http://127.0.0.1:{port}/", proc=proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/class?name=dog", timeout=5) as r:
            assert b"page 1 of 3" in r.read()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}/" in out and "stopped" in out
    assert not group_alive(proc.pid)  # no process of the command outlives it
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_cli_refuses_a_folder_it_cannot_browse(tmp_path):
    proc = launch(tmp_path, free_port())
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "neither a run folder" in err
    assert "serving" not in out
