"""Endpoint tests of ``priming browse`` with Starlette's test client."""

from __future__ import annotations

import json
import re
from html import unescape

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")
pytest.importorskip("httpx")
pq = pytest.importorskip("pyarrow.parquet")

from starlette.testclient import TestClient  # noqa: E402

from priming.browse import ParquetPager, Predictions, create_app  # noqa: E402
from priming.errors import DataError  # noqa: E402
from tests.test_browse_fixtures import (  # noqa: E402
    N_CAT,
    N_DOG,
    dropped_rows,
    make_real_run,
    pool_rows,
    write_handmade_run,
)


def cells(html: str, cls: str) -> list[str]:
    """Text of every ``<td class="cls">`` in document order."""
    pat = rf'<td class="{cls}">(.*?)</td>'
    return [unescape(re.sub(r"<[^>]+>", "", m)).strip() for m in re.findall(pat, html, re.S)]


@pytest.fixture
def hand(tmp_path):
    run = write_handmade_run(tmp_path / "run")
    return run, TestClient(create_app(run))


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browse-real")
    run, corpus, res = make_real_run(tmp)
    return run, corpus, res


# ------------------------------------------------------------------- pager (unit)
def test_pager_reads_only_needed_groups_and_matches_brute_force(tmp_path):
    run = write_handmade_run(tmp_path / "run")
    path = run / "pool" / "pool.parquet"
    pager = ParquetPager(path, group_by="class_name", cache_groups=2)
    full = pq.read_table(path).to_pylist()
    dogs = [i for i, r in enumerate(full) if r["class_name"] == "dog"]
    assert pager.count("dog") == N_DOG and pager.count("cat") == N_CAT and pager.count("bird") == 0
    pg = pager.page(100, 50, ["row_id", "caption"], group="dog")
    assert [r["row_id"] for r in pg.rows] == [full[i]["row_id"] for i in dogs[100:150]]
    assert pg.total == N_DOG and not pg.has_more and len(pg.rows) == 30
    assert len(pager._cache) <= 2  # bounded cache of decoded row groups
    # random positions across groups, returned in the order asked
    pos = [136, 3, 77, 41]
    assert [r["row_id"] for r in pager.take(pos, ["row_id"])] == [full[i]["row_id"] for i in pos]
    with pytest.raises(IndexError):
        pager.take([len(full)], ["row_id"])


def test_pager_search_pages_like_a_full_scan(tmp_path):
    run = write_handmade_run(tmp_path / "run")
    pager = ParquetPager(run / "pool" / "pool.parquet", group_by="class_name")
    full = pq.read_table(run / "pool" / "pool.parquet").to_pylist()
    want = [r["row_id"] for r in full if "BEACH" in r["caption"].upper()]
    assert len(want) == 13
    got, offset = [], 0
    while True:
        pg = pager.search("caption", "Beach", offset, 5, ["row_id"])
        got += [r["row_id"] for r in pg.rows]
        offset += 5
        if not pg.has_more:
            break
    assert got == want and pg.total == 13
    first = pager.search("caption", "beach", 0, 5, ["row_id"])
    assert first.total is None and first.has_more  # stopped early: total unknown
    # literal, not a regex; restricted to a group
    assert pager.search("caption", ".*", 0, 10, ["row_id"]).rows == []
    cat = pager.search("caption", "number", 0, 100, ["row_id"], group="cat")
    assert len(cat.rows) == N_CAT and cat.total == N_CAT


def test_predictions_npz_and_csv(tmp_path):
    from priming.eval.metrics import save_predictions

    S = np.array([[0.125, 0.75, 0.25], [0.5, 0.25, 0.375], [0.25, 0.375, 0.5]])
    save_predictions(
        tmp_path / "p.npz", ["a", "a", "c"], ["b", "a", "c"], S, ["a", "b", "c"], ["x", "y", "z"]
    )
    p = Predictions.load(tmp_path / "p.npz")
    assert p.errors_of("a") == [
        {"index": 0, "id": "x", "y_pred": "b", "top3": [("b", 0.75), ("c", 0.25), ("a", 0.125)]}
    ]
    assert p.confused_pairs() == [("a", "b", 1)]
    (tmp_path / "p.csv").write_text("label,prediction\na,b\nb,b\n")
    q = Predictions.load(tmp_path / "p.csv")
    assert q.ids == ["0", "1"] and q.errors_of("a")[0]["top3"] == []
    # the file `priming prime` writes: id,label,prediction,confidence,top3 ("a|b|c")
    (tmp_path / "run.csv").write_text(
        "id,label,prediction,confidence,top3\n"
        "i0,a,b,0.6000,b|a|c\ni1,b,b,0.9000,b|c|a\ni2,,c,0.5000,c|a|b\ni3,a,c,0.4,c|b|a\n"
    )
    r = Predictions.load(tmp_path / "run.csv")
    assert r.errors_of("a") == [
        {"index": 0, "id": "i0", "y_pred": "b", "top3": [("b", 0.6), ("a", None), ("c", None)]},
        {"index": 3, "id": "i3", "y_pred": "c", "top3": [("c", 0.4), ("b", None), ("a", None)]},
    ]
    assert r.confused_pairs() == [("a", "b", 1), ("a", "c", 1)]  # unlabelled i2 left out
    (tmp_path / "bad.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(DataError, match="y_true"):
        Predictions.load(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("y_true,y_pred,score:a\na,a,high\n")
    with pytest.raises(DataError, match="non-number"):
        Predictions.load(tmp_path / "bad2.csv")


# ------------------------------------------------------------------- pages
def test_overview_shows_steps_alpha_heads_and_confusions(hand):
    run, client = hand
    r = client.get("/")
    assert r.status_code == 200
    html = r.text
    for step in ("recall", "nsfw", "dedup-url", "agreement", "holdout"):
        assert f"<th>{step}</th>" in html
    row = re.search(r'<tr data-class="dog">(.*?)</tr>', html, re.S).group(1)
    assert "150" in row and "−15" in row and f'<td class="size">{N_DOG}</td>' in row
    assert re.search(r"α = <strong>0.700</strong>, chosen by <strong>validation</strong>", html)
    assert "primed (neural-priming)" in html and "0.625" in html
    conf = re.search(r'<table id="confused">(.*?)</table>', html, re.S).group(1)
    # bird->dog, bird->cat, cat->dog: one each, sorted by (true, pred)
    pairs = re.findall(r"<tr><td><a[^>]*>(\w+)</a></td><td>(\w+)</td><td>(\d+)</td></tr>", conf)
    assert pairs == [("bird", "cat", "1"), ("bird", "dog", "1"), ("cat", "dog", "1")]
    assert (
        "content-security-policy" in r.headers and r.headers["x-content-type-options"] == "nosniff"
    )


def test_class_pages_page_through_pool_in_file_order(hand):
    run, client = hand
    want = [r[1] for r in pool_rows() if r[0] == "dog"]
    seen = []
    for page in (1, 2, 3):
        html = client.get("/class", params={"name": "dog", "page": page}).text
        seen += [int(x) for x in re.findall(r'<tr data-row-id="(\d+)">', html)]
        assert f"page {page} of 3" in html
    assert seen == want
    html = client.get("/class", params={"name": "dog", "page": 3}).text
    assert 'rel="next"' not in html and 'rel="prev"' in html
    # probability and matched name are shown
    first = client.get("/class", params={"name": "cat"}).text
    assert cells(first, "matched")[:2] == ["kitty", "kitty"]
    assert cells(first, "probability")[0] == "0.990"


def test_dropped_heldout_and_errors_views(hand):
    run, client = hand
    html = client.get("/class", params={"name": "cat", "view": "dropped"}).text
    want = [r for r in dropped_rows() if r[1] == "cat"]
    assert cells(html, "step") == [r[2] for r in want]
    assert cells(html, "reason") == [r[3] for r in want]
    assert "dropped (5)" in html and "held out (0)" in html
    html = client.get("/class", params={"name": "dog", "view": "heldout"}).text
    assert len(re.findall(r"<tr data-row-id=", html)) == 5
    html = client.get("/class", params={"name": "bird", "view": "errors"}).text
    assert cells(html, "id") == ["e6", "e7"] and cells(html, "pred") == ["dog", "cat"]
    top = cells(html, "top3")[0]
    assert top.startswith("dog (0.800), bird (0.300), cat (0.100)")


def test_search_over_pool_captions(hand):
    run, client = hand
    html = client.get("/search", params={"q": "beach", "per_page": 5}).text
    ids = [int(x) for x in re.findall(r'<tr data-row-id="(\d+)">', html)]
    assert ids == [r[1] for r in pool_rows() if "beach" in r[2]][:5]
    assert 'rel="next"' in html
    html = client.get("/search", params={"q": "number", "class": "cat"}).text
    assert len(re.findall(r"<tr data-row-id=", html)) == N_CAT and "7 items" in html
    # markup in a query is text, never HTML
    html = client.get("/search", params={"q": "<script>alert(1)</script>"}).text
    assert "<script>alert(1)" not in html and "&lt;script&gt;" in html


def test_thumbnails_only_for_local_images_under_the_roots(hand):
    run, client = hand
    html = client.get("/class", params={"name": "cat"}).text
    thumbs = re.findall(r'<img src="([^"]+)"', html)
    assert thumbs == ["/file/0/images/cat0.png"]  # ../outside.png and http urls: none
    r = client.get(thumbs[0])
    assert r.status_code == 200 and r.content == (run / "images" / "cat0.png").read_bytes()
    # external urls are links, never fetched by the page
    assert 'href="http://img.example/cat/2.jpg"' in html


@pytest.mark.parametrize(
    "path",
    [
        "/file/0/../outside.png",
        "/file/0/%2e%2e/outside.png",
        "/file/0/%2E%2E%2Foutside.png",
        "/file/0/..%2foutside.png",
        "/file/0/images/..%2f..%2foutside.png",
        "/file/0/%252e%252e/outside.png",
        "/file/0/images/%2e%2e/%2e%2e/outside.png",
        "/file/0/secret.txt",
        "/file/0/images/link.png",
        "/file/0/images/cat0.png%00.txt",
        "/file/0//etc/passwd",
        "/file/0/%2Fetc%2Fpasswd",
        "/file/0/pool/pool.json",
        "/file/1/anything.png",
        "/file/-1/outside.png",
        "/static/../metrics.json",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
    ],
)
def test_no_path_traversal(hand, path):
    run, client = hand
    (run / "images" / "link.png").symlink_to(run.parent / "outside.png")  # points outside
    r = client.get(path)
    assert r.status_code == 404, (path, r.status_code)
    assert b"not an image" not in r.content and b"\x89PNG" not in r.content


def test_read_only_and_bad_parameters(hand):
    run, client = hand
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/").status_code == 405
        assert getattr(client, method)("/class?name=dog").status_code == 405
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert client.get("/class", params={"name": "wolf"}).status_code == 404
    r = client.get("/class", params={"name": "dog", "page": "0"})
    assert r.status_code == 400 and "page must lie in" in r.text
    assert client.get("/class", params={"name": "dog", "per_page": "10000"}).status_code == 400
    assert client.get("/class", params={"name": "dog", "page": "x"}).status_code == 400
    assert client.get("/class", params={"name": "dog", "view": "nope"}).status_code == 400
    assert client.get("/class", params={"name": "dog", "page": 99}).status_code == 200


def test_host_header_guard(hand):
    run, _ = hand
    client = TestClient(create_app(run, allowed_hosts=["127.0.0.1", "localhost"]))
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"host": "127.0.0.1:8765"}).status_code == 200


def kept_cells(html: str, cls: str) -> list[int]:
    """The kept count of each step cell in the overview row of class ``cls``."""
    row = re.search(rf'<tr data-class="{cls}">(.*?)</tr>', html, re.S).group(1)
    tds = re.findall(r"<td>(\d+)(?: <span class=\"drop\"[^>]*>−(\d+)</span>)?</td>", row)
    return [int(k) for k, _ in tds]


def _saved_pool(path):
    from priming.pool import PrimingPool

    E = np.eye(3, 4, dtype=np.float32)
    pool = PrimingPool(E, [0, 1, 1], ["a", "b"], row_ids=[5, 6, 7], captions=["x a", "y b", "z b"])
    pool.record_step("recall")
    small = pool.subset([0, 1], step="cap")
    small.save(path)
    return small


def test_older_pool_folder_without_step_records(tmp_path):
    """A pool saved before step records: pool.json steps as [name, counts] pairs, no
    steps.parquet, no held-out rows."""
    _saved_pool(tmp_path / "p")
    meta = json.loads((tmp_path / "p" / "pool.json").read_text())
    meta["steps"] = [["recall", [1, 2]], ["cap", [1, 1]]]
    (tmp_path / "p" / "pool.json").write_text(json.dumps(meta))
    for extra in ("steps.parquet", "heldout.parquet", "heldout.npy"):
        (tmp_path / "p" / extra).unlink(missing_ok=True)
    client = TestClient(create_app(tmp_path / "p"))
    html = client.get("/").text
    assert "<th>recall</th>" in html and "<th>cap</th>" in html
    assert kept_cells(html, "b") == [2, 1] and kept_cells(html, "a") == [1, 1]
    html = client.get("/class", params={"name": "b", "view": "dropped"}).text
    assert "no items" in html and 'id="tab-dropped"' not in html
    assert client.get("/class", params={"name": "b"}).text.count("<tr data-row-id=") == 1


def test_pool_saved_by_the_current_pool_class(tmp_path):
    """Whatever format PrimingPool.save writes today, the overview shows its counts."""
    pool = _saved_pool(tmp_path / "p")
    html = TestClient(create_app(tmp_path / "p")).get("/").text
    stats = pool.stats()
    for name in pool.class_names:
        assert kept_cells(html, name) == [stats[s][name] for s in stats]


def test_not_a_browsable_folder(tmp_path):
    with pytest.raises(DataError, match="neither a run folder"):
        create_app(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        create_app(tmp_path / "missing")


# ------------------------------------------------------------------- a real run
def test_real_run_pages_match_its_files(real):
    run, corpus, res = real
    client = TestClient(create_app(run))
    m = json.loads((run / "metrics.json").read_text())
    html = client.get("/").text
    assert f"chosen by <strong>{m['alpha']['source']}</strong>" in html
    for head, rep in m["eval"].items():
        assert f"<td>{head}</td><td>{rep['top1']:.3f}</td>" in html
    pool = pq.read_table(run / "pool" / "pool.parquet").to_pylist()
    for name, n in m["pool"]["per_class"].items():
        page = client.get("/class", params={"name": name, "per_page": 500}).text
        shown = [int(x) for x in re.findall(r'<tr data-row-id="(-?\d+)">', page)]
        assert shown == [r["row_id"] for r in pool if r["class_name"] == name]
        assert len(shown) == n
        caps = cells(page, "caption")
        assert caps == [r["caption"] for r in pool if r["class_name"] == name]
    from priming.browse import Predictions

    pfile = next(run / f for f in ("predictions.npz", "predictions.csv") if (run / f).is_file())
    preds = Predictions.load(pfile)
    assert preds.confused_pairs()  # the tiny run makes mistakes: the page lists them
    assert "Most confused pairs" in html
    for name in m["classes"]:
        page = client.get("/class", params={"name": name, "view": "errors"}).text
        assert cells(page, "id") == [e["id"] for e in preds.errors_of(name)]


def test_real_run_dropped_rows_match_steps_parquet(real):
    run, corpus, res = real
    client = TestClient(create_app(run))
    steps = run / "pool" / "steps.parquet"
    for name in json.loads((run / "metrics.json").read_text())["classes"]:
        html = client.get("/class", params={"name": name, "view": "dropped", "per_page": 500}).text
        if not steps.is_file():  # a pool from before step records: no dropped tab
            assert 'id="tab-dropped"' not in html
            continue
        want = [r for r in pq.read_table(steps).to_pylist() if r["class"] == name]
        assert [int(x) for x in re.findall(r'<tr data-row-id="(-?\d+)">', html)] == [
            r["row_id"] for r in want[:500]
        ]
        assert cells(html, "reason") == [r["reason"] for r in want[:500]]


def test_corpus_folder_search(real):
    run, corpus, res = real
    client = TestClient(create_app(corpus))
    html = client.get("/").text
    assert "150 rows" in html
    html = client.get("/search", params={"q": "ripe banana", "per_page": 7}).text
    caps = cells(html, "caption")
    assert 0 < len(caps) <= 7 and all({"ripe", "banana"} <= set(c.split()) for c in caps)
    from priming.corpus import open_corpus

    hits = open_corpus(corpus).search_captions({"q": ["ripe banana"]}, mode="all_tokens").table
    assert caps == hits.column("caption").to_pylist()[:7]
    html = client.get("/search", params={"q": "***"}).text
    assert 'id="message"' in html
    assert client.get("/search", params={"q": "a", "mode": "regex"}).status_code == 400
    r = client.get("/search", params={"q": "ripe", "page": 10_000})
    assert r.status_code == 400 and "narrow the query" in r.text


def test_eval_item_thumbnails_from_the_runs_data_folder(tmp_path):
    from tests.test_browse_fixtures import png_bytes

    run = write_handmade_run(tmp_path / "run")
    data = tmp_path / "evalset"
    (data / "bird").mkdir(parents=True)
    (data / "bird" / "1.png").write_bytes(png_bytes())
    (tmp_path / "elsewhere.png").write_bytes(png_bytes())
    m = json.loads((run / "metrics.json").read_text())
    m["config"] = {"eval": str(data)}
    (run / "metrics.json").write_text(json.dumps(m))
    lines = (run / "predictions.csv").read_text().splitlines()
    lines[7] = lines[7].replace("e6,", f"{data / 'bird' / '1.png'},", 1)
    lines[8] = lines[8].replace("e7,", f"{tmp_path / 'elsewhere.png'},", 1)
    (run / "predictions.csv").write_text("\n".join(lines) + "\n")
    client = TestClient(create_app(run))
    html = client.get("/class", params={"name": "bird", "view": "errors"}).text
    thumbs = re.findall(r'<img src="([^"]+)"', html)
    assert thumbs == ["/file/1/bird/1.png"]  # root 1: the eval folder; elsewhere.png: none
    assert client.get(thumbs[0]).content == (data / "bird" / "1.png").read_bytes()
    assert client.get("/file/1/../elsewhere.png").status_code == 404


def test_missing_extra_names_it(tmp_path, monkeypatch):
    from priming.errors import MissingDependencyError

    run = write_handmade_run(tmp_path / "run")
    monkeypatch.setitem(__import__("sys").modules, "jinja2", None)
    with pytest.raises(MissingDependencyError, match=r"priming\[browse\]"):
        create_app(run)


def test_cli_parser_and_port_check(tmp_path):
    import argparse

    from priming.cli import browse
    from priming.errors import ConfigError

    p = argparse.ArgumentParser()
    browse.register(p.add_subparsers())
    a = p.parse_args(["browse", str(tmp_path), "--image-root", "x", "--image-root", "y"])
    assert (a.host, a.port, a.image_root) == ("127.0.0.1", 8765, ["x", "y"])
    a.port = 0
    with pytest.raises(ConfigError, match="--port"):
        a.func(a)
