"""``priming corpus``: build, inspect, search, index, embed and export a pretraining corpus."""

from __future__ import annotations

import argparse
import json
import sys

from priming.cli._args import add_executor_options, executor_spec
from priming.cli.progress_bars import progress_callback
from priming.corpus.choices import SEARCH_MODES
from priming.corpus.formats import FORMAT_NAMES


def _common(p: argparse.ArgumentParser, executor_help: str) -> None:
    add_executor_options(p, executor_help)
    p.add_argument("--no-progress", action="store_true", help="draw no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("corpus", help="build and search a pretraining corpus (LAION-style)")
    csub = p.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)

    b = csub.add_parser("build", help="ingest parquet metadata (+ embeddings) into a corpus")
    b.add_argument(
        "--metadata",
        action="append",
        required=True,
        help="parquet file, folder or glob (repeatable)",
    )
    b.add_argument(
        "--embeddings", help="folder of row-aligned .npy files (clip-retrieval img_emb layout)"
    )
    b.add_argument("--embedding-model", help="name of the model that made --embeddings (recorded)")
    b.add_argument(
        "--format",
        choices=FORMAT_NAMES,
        default=None,
        help="source layout (default: detected from the columns and file names, recorded "
        "in the manifest)",
    )
    b.add_argument(
        "--embedding-key",
        default=None,
        help="DataComp: the .npz key to store, e.g. l14_img (OpenAI ViT-L/14 image features; "
        "the model is recorded from the key)",
    )
    b.add_argument(
        "--out", required=True, help="corpus directory (an unfinished build there resumes)"
    )
    b.add_argument("--workers", type=int, default=None, help="parallel processes (default: CPUs)")
    _common(b, "shard building")
    b.set_defaults(func=run_build)

    i = csub.add_parser("info", help="summarise a corpus")
    i.add_argument("corpus")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.add_argument("--verify", action="store_true", help="recompute every file checksum")
    i.set_defaults(func=run_info)

    s = csub.add_parser("search", help="phrase-search the captions")
    s.add_argument("corpus")
    s.add_argument("names", nargs="+", help="one or more names (synonyms of one label)")
    s.add_argument("--limit", type=int, default=20, help="rows to show (default 20)")
    s.add_argument("--mode", choices=SEARCH_MODES, default="phrase")
    s.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    _common(s, "the shard search")
    s.set_defaults(func=run_search)

    x = csub.add_parser("index", help="train an IVF-PQ vector index over the embeddings")
    x.add_argument("corpus")
    x.add_argument("--nlist", type=int, default=None)
    x.add_argument("--m", type=int, default=None, help="PQ sub-quantizers (must divide dim)")
    x.add_argument("--nbits", type=int, default=8)
    x.add_argument("--train-size", type=int, default=None)
    x.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=run_index)

    e = csub.add_parser(
        "embed",
        help="fill in embeddings: captions with a text encoder, or images (--images) "
        "with an image model",
    )
    e.add_argument("corpus")
    e.add_argument(
        "--model", required=True, help="encoder name, e.g. sentence-transformers:all-MiniLM-L6-v2"
    )
    e.add_argument(
        "--images",
        default=None,
        help="img2dataset output folder (webdataset NNNNN.tar or 'files' NNNNN/ folders): "
        "embed the rows' images instead of their captions",
    )
    e.add_argument("--workers", type=int, default=None, help="image decoding threads")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--device", default=None)
    e.add_argument("--overwrite", action="store_true", help="replace embeddings of another model")
    _common(e, "image decoding")
    e.set_defaults(func=run_embed)

    u = csub.add_parser(
        "export-urls", help="write search hits as an img2dataset url list (parquet)"
    )
    u.add_argument("corpus")
    u.add_argument("names", nargs="*", help="names for one label (or use --classes)")
    u.add_argument("--classes", help="text file: one class per line, '|' between synonyms")
    u.add_argument("--limit-per-label", type=int, default=None)
    u.add_argument("--mode", choices=SEARCH_MODES, default="phrase")
    u.add_argument(
        "--include-nsfw",
        action="store_true",
        help="keep rows flagged NSFW (left out by default, as `priming prime` drops them)",
    )
    u.add_argument("--out", required=True, help="output .parquet")
    u.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    u.set_defaults(func=run_export)


def run_build(args: argparse.Namespace) -> int:
    from priming.corpus import build_corpus, open_corpus

    out = build_corpus(
        args.metadata,
        embeddings=args.embeddings,
        out=args.out,
        workers=args.workers,
        embedding_model=args.embedding_model,
        progress=progress_callback(not args.no_progress),
        executor=executor_spec(args),
        format=args.format,
        embedding_key=args.embedding_key,
    )
    c = open_corpus(out)
    src = c.manifest.get("source_format") or {}
    if src:
        how = "detected: " if src.get("detected") else ""
        print(f"format {src.get('name')} ({how}{src.get('reason')})")
    stats = c.manifest.get("stats", {})
    print(f"built {out}: {c.n_rows} rows in {len(c.shards)} shards, embeddings: {c.dim or 'none'}")
    print("skipped/repaired: " + ", ".join(f"{k}={v}" for k, v in stats.items()))
    return 0


def run_info(args: argparse.Namespace) -> int:
    from priming.corpus import open_corpus, verify_corpus

    c = open_corpus(args.corpus)
    m = c.manifest
    if args.json:
        print(json.dumps(m, indent=1))
    else:
        disk = sum(s["db_bytes"] + s.get("embeddings_bytes", 0) for s in c.shards)
        print(f"corpus      {c.path}")
        print(f"schema      {m['schema_version']}")
        print(f"rows        {c.n_rows}")
        print(f"shards      {len(c.shards)}")
        print(
            f"embeddings  {f'{c.dim}-d float16, model {c.embedding_model}' if c.has_embeddings else 'none'}"
        )
        if c.has_embeddings and c.n_missing_embeddings:
            print(f"missing     {c.n_missing_embeddings} rows without an embedding")
        print(
            f"index       {m['index']['type'] + ' nlist=' + str(m['index']['nlist']) if m.get('index') else 'none'}"
        )
        print(f"disk        {disk / 1e6:.1f} MB")
        print("stats       " + ", ".join(f"{k}={v}" for k, v in m.get("stats", {}).items()))
        print(f"fingerprint {c.fingerprint}")
    problems = verify_corpus(c.path, checksums=args.verify)
    if problems:
        for p in problems:
            print(f"problem: {p}", file=sys.stderr)
        print(
            f"corpus {c.path} is damaged ({len(problems)} problems); rebuild it with the same "
            "`priming corpus build` command into a new --out",
            file=sys.stderr,
        )
        return 1
    print("checksums   ok" if args.verify else "files       ok (--verify also checks checksums)")
    return 0


def run_search(args: argparse.Namespace) -> int:
    from priming.corpus import open_corpus

    c = open_corpus(args.corpus, executor=executor_spec(args))
    label = args.names[0]
    hits = c.search_captions({label: args.names}, limit_per_label=args.limit, mode=args.mode)
    shown = hits.counts[label]
    # the total needs a count only when the limit cut the hits short
    total = (
        c.count_captions({label: args.names}, mode=args.mode)[label]
        if shown >= args.limit
        else shown
    )
    if not args.json:  # the header goes where the total goes: rows alone on stdout
        print("row_id\tcaption\turl", file=sys.stderr, flush=True)
    for r in hits.table.to_pylist():
        if args.json:
            print(
                json.dumps(
                    {k: r[k] for k in ("row_id", "name", "caption", "url", "nsfw", "similarity")}
                )
            )
        else:
            print(f"{r['row_id']}\t{r['caption']}\t{r['url'] or ''}")
    sys.stdout.flush()
    more = f"; --limit {total} shows all" if total > shown else ""
    print(
        f"{shown} of {total} matching rows shown (limit {args.limit}, mode {args.mode}{more})",
        file=sys.stderr,
    )
    return 0


def run_index(args: argparse.Namespace) -> int:
    from priming.corpus import build_index

    out = build_index(
        args.corpus,
        nlist=args.nlist,
        m=args.m,
        nbits=args.nbits,
        train_size=args.train_size,
        random_state=args.seed,
    )
    print(f"wrote {out}")
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from priming.corpus import fill_embeddings
    from priming.encoders import create_encoder

    encoder = create_encoder(args.model, device=args.device)
    if args.images is None:
        fill_embeddings(
            args.corpus,
            encoder,
            batch_size=args.batch_size,
            overwrite=args.overwrite,
            progress=progress_callback(not args.no_progress),
        )
        print(f"embedded {args.corpus} with {encoder.name} ({encoder.dim}-d)")
        return 0
    fill_embeddings(
        args.corpus,
        encoder,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        progress=progress_callback(not args.no_progress),
        images=args.images,
        workers=args.workers,
        executor=executor_spec(args),
    )
    _print_image_report(args.corpus, encoder)
    return 0


def _print_image_report(corpus_dir: str, encoder) -> None:
    from priming.corpus import read_manifest

    m = read_manifest(corpus_dir)
    st, mt = m.get("image_stats", {}), m.get("image_match", {})
    print(
        f"embedded the images of {st.get('embedded', 0)} of {m['n_rows']} rows of {corpus_dir} "
        f"with {encoder.name} ({encoder.dim}-d); {m.get('n_missing_embeddings', 0)} rows have "
        f"no embedding ({st.get('no_image', 0)} without a downloaded image, "
        f"{st.get('corrupt', 0)} corrupt)"
    )
    print(
        f"img2dataset samples: {mt.get('samples', 0)}, matched {mt.get('matched', 0)}, "
        f"unmatched {mt.get('unmatched', 0)}, duplicate rows {mt.get('duplicates', 0)}, "
        f"without image file {mt.get('no_image_file', 0)}"
    )
    for s in m["shards"]:
        for source, reason in s.get("image_stats", {}).get("corrupt_examples", [])[:10]:
            print(f"  skipped {source}: {reason}")
    for source, reason in mt.get("unmatched_examples", [])[:10]:
        print(f"  unmatched {source}: {reason}")


def read_classes(path: str) -> dict[str, list[str]]:
    """Read a class-name file exactly as ``priming prime`` does (comments, BOM and
    invisible characters ignored; duplicates an error): label -> names."""
    from priming.classnames import load_class_names

    return {names[0]: names for names in load_class_names(path)}


def run_export(args: argparse.Namespace) -> int:
    from priming.corpus import check_export_path, export_urls, open_corpus
    from priming.errors import ConfigError

    if args.classes and args.names:
        raise ConfigError("give names or --classes, not both")
    if args.classes:
        queries = read_classes(args.classes)
    elif args.names:
        queries = {args.names[0]: args.names}
    else:
        raise ConfigError("give one or more names, or --classes FILE")
    check_export_path(args.out, args.overwrite)
    c = open_corpus(args.corpus)
    hits = c.search_captions(queries, limit_per_label=args.limit_per_label, mode=args.mode)
    res = export_urls(c, hits, args.out, overwrite=args.overwrite, include_nsfw=args.include_nsfw)
    nsfw = "" if args.include_nsfw else f"{res['skipped_nsfw']} flagged NSFW, "
    print(
        f"wrote {res['written']} urls to {args.out} ({res['missing_url']} rows without url, "
        f"{nsfw}{hits.ambiguous.num_rows} ambiguous rows left out)"
    )
    return 0
