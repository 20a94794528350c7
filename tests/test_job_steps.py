"""The job steps composed by hand give exactly what run_prime gives; typed results;
progress events."""

import json

import numpy as np
import pytest

from priming.job import PrimeConfig, run_prime, steps
from tests._fakes import BagOfWordsEncoder, write_text_corpus

FRUITS = ["apple", "banana", "cherry", "durian"]
EXTRA = ["sweet", "fresh", "ripe", "green", "red", "sliced", "market", "tree", "juice", "pie"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("steps")
    rng = np.random.default_rng(1)
    enc = BagOfWordsEncoder(dim=48)
    caps = [" ".join([*rng.choice(EXTRA, 3), FRUITS[i % 3]]) + f" {i}" for i in range(90)]
    write_text_corpus(tmp, caps, enc)
    (tmp / "classes.txt").write_text("apple\nbanana|plantain\ncherry\ndurian\n")
    ev = [
        {"text": f"{rng.choice(EXTRA)} {FRUITS[i % 4]}", "label": FRUITS[i % 4]} for i in range(16)
    ]
    (tmp / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in ev))
    shots = [{"text": f"a {f} here", "label": f} for f in FRUITS for _ in range(2)]
    (tmp / "shots.jsonl").write_text("\n".join(json.dumps(r) for r in shots))
    return tmp, enc


def _cfg(tmp, **kw):
    base = dict(model="fake:bow", classes=str(tmp / "classes.txt"), corpus=str(tmp / "corpus"),
                out=str(tmp / "run"), eval=str(tmp / "eval.jsonl"), cache_dir=str(tmp / "cache"),
                per_class=15, progress=False, overwrite=True, templates="identity")  # fmt: skip
    return PrimeConfig.from_mapping({**base, **kw})


def test_steps_by_hand_equal_run_prime(world):
    from priming.corpus import open_corpus

    tmp, enc = world
    cfg = _cfg(tmp, shots=str(tmp / "shots.jsonl"), transductive=True, transductive_k=3,
               compare=["imprint-best"], alpha="auto")  # fmt: skip
    res = run_prime(cfg, encoder=enc)

    text = steps.make_text_head(enc, tmp / "classes.txt", templates="identity")
    inputs = steps.encode_inputs(enc, text.classes, shots=tmp / "shots.jsonl",
                                 eval=tmp / "eval.jsonl", cache_dir=tmp / "cache")  # fmt: skip
    opts = steps.pool_options(cfg, inputs.n_shots)
    assert opts["transductive"] and opts["k"] == 3 and opts["holdout"] == 0.0
    built = steps.make_pool(open_corpus(tmp / "corpus"), text, inputs, encoder=enc, **opts)
    heads = steps.fit_heads(text, built.pool, inputs, compare=["imprint-best"], alpha="auto")
    assert list(heads) == ["neural-priming", "imprint-best"] == list(res.heads)
    assert built.pool.row_ids.tolist() == res.pool.row_ids.tolist()
    Xe = np.asarray(inputs.eval.embeddings)
    for name, h in heads.items():
        assert np.array_equal(h.decision_function(Xe), res.heads[name].decision_function(Xe))
    ev = steps.evaluate(heads, inputs, text.names)
    assert {k: v.to_json() for k, v in ev.items()} == res.metrics["eval"]
    # oracle for evaluate: top-1 by hand
    pred = np.asarray(text.names)[heads["neural-priming"].decision_function(Xe).argmax(1)]
    truth = np.asarray(text.names)[inputs.eval_y]
    assert ev["primed (neural-priming)"].top1 == pytest.approx(np.mean(pred == truth))


def test_typed_result_is_what_metrics_json_holds(world):
    tmp, enc = world
    res = run_prime(_cfg(tmp, out=str(tmp / "typed")), encoder=enc)
    on_disk = json.loads((tmp / "typed" / "metrics.json").read_text())
    assert res.metrics == on_disk
    assert res.to_json()["metrics"] == on_disk
    r = res.report
    assert r.pool.size == sum(r.pool.per_class.values()) == len(res.pool)
    assert r.pool.empty_classes == ["durian"] and r.n_classes == 4
    assert r.alpha.value == res.head.alpha_ and r.alpha.source == "schedule"
    assert set(r.eval) == {"zero_shot", "primed (neural-priming)"}
    assert list(on_disk) == ["config", "model", "templates", "n_classes", "classes", "pool",
                             "shots", "alpha", "eval", "timings_s", "selection"]  # fmt: skip
    assert on_disk["selection"] == {
        "primed (neural-priming)": {"alpha": {"value": r.alpha.value, "rule": "schedule"}}
    }
    assert list(on_disk["timings_s"]) == ["text_head", "encode_data", "pool", "fit", "evaluate",
                                          "write", "total"]  # fmt: skip


def test_progress_events_and_no_bars(world, capsys):
    tmp, enc = world
    events = []
    run_prime(_cfg(tmp, out=str(tmp / "prog")), encoder=enc, progress=events.append)
    job = [e for e in events if e.task == "priming"]
    assert [e.state for e in job] == ["start"] + ["advance"] * 6 + ["end"]
    assert [e.done for e in job][-1] == 6 and job[0].total == 6
    import inspect

    from priming.data import embed

    if "ProgressCallback" not in str(inspect.signature(embed).parameters["progress"].annotation):
        pytest.skip("priming.data.embed still takes a bool (draws tqdm) before the io merge")
    assert capsys.readouterr().err == ""  # the library draws nothing


def test_narrow_without_data_is_a_config_error(world):
    from priming.errors import ConfigError

    with pytest.raises(ConfigError, match="transductive narrowing needs"):
        steps.narrow(object(), steps.Inputs(), transductive=True)
    assert steps.narrow("pool", steps.Inputs()) == "pool"
