import json

import numpy as np
import pytest

from priming.cli import main
from priming.errors import ConfigError, DataError
from priming.heads import load_head
from priming.job import PrimeConfig, load_config, run_prime
from priming.pool import build_pool
from tests._fakes import BagOfWordsEncoder, write_text_corpus

FRUITS = ["apple", "banana", "cherry", "durian"]
EXTRA = ["sweet", "fresh", "ripe", "green", "red", "sliced", "market", "tree", "juice", "pie"]


def captions(rng, n):
    out = []
    for i in range(n):
        f = FRUITS[i % 3]  # durian never appears
        words = list(rng.choice(EXTRA, 3)) + [f]
        rng.shuffle(words)
        out.append(" ".join(words) + f" {i}")
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    enc = BagOfWordsEncoder(dim=48)
    corpus = write_text_corpus(tmp, captions(rng, 90), enc)
    (tmp / "classes.txt").write_text("apple\nbanana|plantain\n\ncherry\ndurian\n")
    rows = [
        {"text": " ".join(rng.choice(EXTRA, 2)) + " " + FRUITS[i % 4], "label": FRUITS[i % 4]}
        for i in range(24)
    ]
    (tmp / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    shots = [{"text": f"a {f} here", "label": f} for f in FRUITS for _ in range(2)]
    (tmp / "shots.jsonl").write_text("\n".join(json.dumps(r) for r in shots))
    return tmp, enc, corpus


def cfg(tmp, **kw):
    base = dict(
        model="fake:bow",
        classes=str(tmp / "classes.txt"),
        corpus=str(tmp / "corpus"),
        out=str(tmp / "run"),
        eval=str(tmp / "eval.jsonl"),
        cache_dir=str(tmp / "cache"),
        per_class=20,
        progress=False,
        overwrite=True,
        templates="identity",
    )
    base.update(kw)
    return PrimeConfig.from_mapping(base)


def test_build_pool_on_real_corpus(world):
    from priming.corpus import open_corpus

    tmp, enc, corpus_dir = world
    c = open_corpus(corpus_dir)
    from priming.heads import build_text_weights

    T = build_text_weights(enc, FRUITS, templates="identity")
    pool = build_pool(c, FRUITS, T, per_class=20, encoder=enc)
    assert pool.counts().tolist() == [20, 20, 20, 0]
    for cap, lab in zip(pool.captions, pool.labels):
        assert FRUITS[lab] in cap.split()
    assert pool.meta["empty_classes"] == ["durian"]


def test_run_prime_end_to_end(world):
    tmp, enc, _ = world
    res = run_prime(
        cfg(
            tmp,
            shots=str(tmp / "shots.jsonl"),
            alpha="auto",
            compare=["imprint-best"],
            n_proxies=None,
        ),
        encoder=enc,
    )
    run = tmp / "run"
    for f in (
        "head/head.json",
        "head/fitted/imprint_/arrays.npz",
        "pool/pool.parquet",
        "pool/embeddings.npy",
        "metrics.json",
        "report.md",
        "report.png",
        "heads/imprint-best/head.json",
    ):
        assert (run / f).is_file(), f
    m = json.loads((run / "metrics.json").read_text())
    assert m["pool"]["per_class"] == {"apple": 20, "banana": 20, "cherry": 20, "durian": 0}
    assert m["pool"]["empty_classes"] == ["durian"]
    assert m["alpha"]["source"] == "cv-shots" and 0 <= m["alpha"]["value"] <= 1
    assert set(m["eval"]) == {"zero_shot", "primed (neural-priming)", "primed (imprint-best)"}
    for r in m["eval"].values():
        assert 0 <= r["top1"] <= 1 and set(r["per_class"]) == set(FRUITS)
    report = (run / "report.md").read_text()
    assert "| durian |" in report and "Accuracy" in report
    head = load_head(run / "head")
    assert head.metadata_["model"]["name"] == "fake:bow"
    X = enc.encode_texts(["ripe banana", "cherry pie"])
    assert head.predict(X).tolist() == res.head.predict(X).tolist()
    assert not list(tmp.glob(".run.tmp-*"))  # nothing half-written left behind


def test_compare_takes_registered_head_kinds(world):
    """--compare accepts any registered head kind besides the presets: the head is fitted
    on pool ∪ shots with the run's text head, evaluated on the whole eval batch, saved
    under heads/<kind>/, and its selection rules are recorded in metrics.json."""
    from priming.heads import TipAdapterHead, TransCLIPHead

    tmp, enc, _ = world
    out = tmp / "run-kinds"
    res = run_prime(
        cfg(
            tmp,
            out=str(out),
            shots=str(tmp / "shots.jsonl"),
            compare=["tip-adapter", "transclip"],
        ),
        encoder=enc,
    )
    m = json.loads((out / "metrics.json").read_text())
    assert {"tip-adapter", "transclip", "primed (neural-priming)"} <= set(m["eval"])
    assert m["selection"]["primed (neural-priming)"]["alpha"]["rule"] == m["alpha"]["source"]
    assert m["selection"]["tip-adapter"] == res.heads["tip-adapter"].selection_
    # independent refit of the same kinds on the same rows gives the same accuracy
    pool = res.pool
    shots = [json.loads(r) for r in (tmp / "shots.jsonl").read_text().splitlines()]
    rows = [json.loads(r) for r in (tmp / "eval.jsonl").read_text().splitlines()]
    T = res.head.text_weights
    X = np.concatenate([pool.embeddings, enc.encode_texts([r["text"] for r in shots])])
    y = np.concatenate([np.asarray(FRUITS, object)[pool.labels], [r["label"] for r in shots]])
    Xe = enc.encode_texts([r["text"] for r in rows])
    ye = np.asarray([r["label"] for r in rows], object)
    for kind, cls in (("tip-adapter", TipAdapterHead), ("transclip", TransCLIPHead)):
        ref = cls(text_weights=T, classes=list(FRUITS), random_state=0).fit(X, y)
        assert m["eval"][kind]["top1"] == pytest.approx(float(np.mean(ref.predict(Xe) == ye)))
        again = load_head(out / "heads" / kind)
        assert again.predict(Xe).tolist() == res.heads[kind].predict(Xe).tolist()


def test_compare_unknown_kind_lists_the_kinds(tmp_path):
    with pytest.raises(ConfigError, match="tip-adapter"):
        PrimeConfig.from_mapping(
            {"model": "x", "classes": "c.txt", "corpus": "c", "out": "o", "compare": ["nope"]}
        )


def test_transductive_and_guided(world):
    tmp, enc, _ = world
    res = run_prime(
        cfg(
            tmp,
            out=str(tmp / "run-t"),
            shots=str(tmp / "shots.jsonl"),
            transductive=True,
            guided=True,
            transductive_k=2,
        ),
        encoder=enc,
    )
    st = res.pool.stats()
    assert "transductive+guided" in st
    # oracle: the same run's pool before narrowing; keep each eval text's 2 nearest pool
    # items (cosine, labels unused) and each shot's 2 nearest items of the shot's class
    full = run_prime(cfg(tmp, out=str(tmp / "run-f"), shots=str(tmp / "shots.jsonl")), encoder=enc)
    P = full.pool.embeddings / np.linalg.norm(full.pool.embeddings, axis=1, keepdims=True)
    want = set()
    for name, guided in (("eval.jsonl", False), ("shots.jsonl", True)):
        rows = [json.loads(line) for line in (tmp / name).read_text().splitlines()]
        Q = enc.encode_texts([r["text"] for r in rows])
        for q, r in zip(Q, rows):
            sim = P @ (q / np.linalg.norm(q))
            if guided:
                sim = np.where(full.pool.labels == FRUITS.index(r["label"]), sim, -np.inf)
            top = np.argsort(-sim, kind="stable")[:2]
            want |= {int(full.pool.row_ids[j]) for j in top if np.isfinite(sim[j])}
    assert set(res.pool.row_ids.tolist()) == want
    assert 0 < len(want) < len(full.pool)


def test_config_reports_every_problem(world, tmp_path):
    tmp, _, _ = world
    with pytest.raises(ConfigError) as exc:
        PrimeConfig.from_mapping(
            {
                "classes": "nope.txt",
                "alpha": 3,
                "per_class": 0,
                "head": "magic",
                "colour": "blue",
                "transductive": True,
            }
        )
    msg = str(exc.value)
    for bit in (
        "unknown setting 'colour'",
        "model is required",
        "'nope.txt' does not exist",
        "alpha must lie in [0, 1]",
        "per_class must be a positive integer",
        "head preset 'magic'",
        "transductive needs unlabelled data",
    ):
        assert bit in msg, bit
    f = tmp_path / "run.toml"
    f.write_text(
        f'model = "fake:bow"\nclasses = "{tmp}/classes.txt"\ncorpus = "{tmp}/corpus"\nout = "r"\nalpha = 0.7\n'
    )
    c = load_config(f)
    assert c.alpha == 0.7 and c.out == str((tmp_path / "r").resolve())
    f.write_text("model = [unclosed")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(f)


def test_bad_inputs(world, tmp_path):
    tmp, enc, _ = world
    bad = tmp_path / "eval.jsonl"
    bad.write_text(
        json.dumps({"text": "kiwi", "label": "kiwi"})
        + "\n"
        + json.dumps({"text": "x apple", "label": "apple"})
    )
    with pytest.raises(DataError, match="labels outside the class list: 'kiwi'"):
        run_prime(cfg(tmp, out=str(tmp_path / "r"), eval=str(bad)), encoder=enc)
    dup = tmp_path / "dup.txt"
    dup.write_text("apple\nApple\n")
    with pytest.raises(DataError, match="duplicate class name"):
        run_prime(cfg(tmp, out=str(tmp_path / "r"), classes=str(dup)), encoder=enc)
    with pytest.raises(ConfigError, match="model mismatch"):
        run_prime(
            cfg(tmp, out=str(tmp_path / "r")), encoder=BagOfWordsEncoder(dim=48, name="other")
        )
    with pytest.raises(ConfigError, match="dimension mismatch.*48-d.*16-d"):
        run_prime(cfg(tmp, out=str(tmp_path / "r")), encoder=BagOfWordsEncoder(dim=16))
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "x").write_text("keep me")
    with pytest.raises(ConfigError, match="already exists"):
        run_prime(cfg(tmp, out=str(tmp_path / "r2"), overwrite=False), encoder=enc)
    assert not (tmp_path / "r").exists()


def test_empty_pool_falls_back_to_zero_shot(world, tmp_path):
    tmp, enc, _ = world
    classes = tmp_path / "c.txt"
    classes.write_text("kiwi\nmango\n")
    ev = tmp_path / "e.jsonl"
    ev.write_text("\n".join(json.dumps({"text": t, "label": t}) for t in ("kiwi", "mango")))
    res = run_prime(
        cfg(tmp, out=str(tmp_path / "r"), classes=str(classes), eval=str(ev)), encoder=enc
    )
    m = res.metrics
    assert m["pool"]["size"] == 0
    assert m["eval"]["zero_shot"]["top1"] == m["eval"]["primed (neural-priming)"]["top1"]


def test_cli_errors_are_one_line(world, capsys):
    tmp, _, _ = world
    rc = main(
        [
            "prime",
            "--model",
            "fake:bow",
            "--classes",
            str(tmp / "classes.txt"),
            "--corpus",
            str(tmp / "corpus"),
            "--out",
            str(tmp / "x"),
            "--alpha",
            "lots",
            "--per-class",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "alpha must be a number" in err and "per_class must be a positive" in err


def _register_fake():
    from priming.encoders import ENCODERS, register_encoder

    if "fake" not in ENCODERS:
        register_encoder("fake")(
            lambda spec, device, precision: BagOfWordsEncoder(dim=48, name=f"fake:{spec}")
        )


def test_cli_prime_from_config_then_predict(world, tmp_path, capsys):
    tmp, enc, _ = world
    _register_fake()
    toml = tmp_path / "run.toml"
    toml.write_text(
        "[prime]\n"
        'model = "fake:bow"\n'
        f'classes = "{tmp}/classes.txt"\n'
        f'corpus = "{tmp}/corpus"\n'
        f'eval = "{tmp}/eval.jsonl"\n'
        'out = "run"\n'
        f'cache_dir = "{tmp}/cache"\n'
        'templates = "identity"\n'
        "per_class = 15\n"
        'alpha = "auto"\n'
        "progress = false\n"
    )
    assert main(["prime", "--config", str(toml), "--per-class", "12"]) == 0
    out = capsys.readouterr().out
    assert "pool: 36 items for 4 classes (1 without items" in out and "alpha:" in out
    run = tmp_path / "run"
    m = json.loads((run / "metrics.json").read_text())
    assert m["config"]["per_class"] == 12 and m["alpha"]["source"] == "validation"
    preds = tmp_path / "preds.csv"
    assert (
        main(
            [
                "predict",
                "--head",
                str(run / "head"),
                "--data",
                str(tmp / "eval.jsonl"),
                "--cache-dir",
                str(tmp / "cache"),
                "--out",
                str(preds),
                "--no-progress",
            ]
        )
        == 0
    )
    lines = preds.read_text().splitlines()
    assert lines[0] == "id,prediction,confidence" and len(lines) == 25
    assert "accuracy" in capsys.readouterr().err
    # embeddings file in, no encoder needed
    X = enc.encode_texts(["ripe cherry", "banana juice"])
    np.save(tmp_path / "x.npy", X)
    assert main(["predict", "--head", str(run / "head"), "--data", str(tmp_path / "x.npy")]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == ["cherry", "banana"]
    assert main(["predict", "--head", str(tmp_path), "--data", str(tmp_path / "x.npy")]) == 2
    assert "no head.json" in capsys.readouterr().err


def test_knn_and_both_recall_on_real_corpus(world):
    from priming.corpus import open_corpus
    from priming.heads import build_text_weights

    tmp, enc, corpus_dir = world
    c = open_corpus(corpus_dir)
    T = build_text_weights(enc, FRUITS, templates="identity")
    knn = build_pool(
        c, FRUITS, T, per_class=10, recall="knn", agreement=False, dedup_threshold=None
    )
    assert list(knn.stats()) == ["knn", "nsfw", "dedup-url", "cap"]
    E = c.embeddings(list(range(c.n_rows)))
    top = np.argsort(-(E @ (T / np.linalg.norm(T, axis=1, keepdims=True)).T), axis=0)[
        :10
    ]  # brute force
    for r, lab in zip(knn.row_ids.tolist(), knn.labels.tolist()):
        assert r in top[:, lab]
    assert len(knn) >= 10
    both = build_pool(c, FRUITS, T, per_class=None, recall="both", agreement=False, knn_k=5)
    search = build_pool(c, FRUITS, T, per_class=None, agreement=False)
    assert set(search.row_ids) <= set(both.row_ids)


def test_executor_inline_gives_the_default_run(world):
    """The caption search's executor changes where work runs, never the result."""
    tmp, enc, _ = world
    a = run_prime(cfg(tmp, out=str(tmp / "run-local")), encoder=enc)
    b = run_prime(cfg(tmp, out=str(tmp / "run-inline"), executor="inline"), encoder=enc)
    assert a.pool.row_ids.tolist() == b.pool.row_ids.tolist()
    assert a.metrics["eval"] == b.metrics["eval"]
    with pytest.raises(ConfigError, match="executor must be one of"):
        cfg(tmp, executor="nope")
    with pytest.raises(ConfigError, match="ray_address needs executor 'ray'"):
        cfg(tmp, ray_address="10.0.0.1:6379")
