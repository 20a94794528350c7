"""The Starlette application: read-only pages over a run, pool or corpus folder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from priming._optional import require
from priming.browse.sources import (
    STEP_COLUMNS,
    CorpusSource,
    RunSource,
    open_source,
)
from priming.errors import PrimingError

__all__ = ["create_app", "IMAGE_SUFFIXES", "MAX_PER_PAGE"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"})
MAX_PER_PAGE = 500
DEFAULT_PER_PAGE = 50
MAX_CORPUS_OFFSET = 10_000  # the FTS search fetches every hit up to the page asked
MAX_IMAGE_BYTES = 32 * 1024 * 1024
_HERE = Path(__file__).parent
_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self'; object-src 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class _SecurityHeaders:
    """ASGI middleware adding a strict content-security policy to every response."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _HEADERS
            await send(message)

        return await self.app(scope, receive, send_with_headers)


class BadRequest(PrimingError):
    """A query parameter out of range (answered with HTTP 400)."""


def _int_param(request, name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if v < lo or (hi is not None and v > hi):
        bound = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise BadRequest(f"{name} must lie in {bound}, got {v}")
    return v


def _roots(source, image_roots: Sequence[str | Path]) -> list[Path]:
    """Folders local images may be served from: the browsed folder, the ``image_roots``
    and, for a run, the folders of its input data (eval, shots, unlabelled, corpus)."""
    roots = [source.root]
    roots += [Path(r).expanduser().resolve() for r in image_roots]
    cfg = getattr(source, "metrics", {}).get("config") or {}
    for key in ("eval", "shots", "unlabelled", "corpus"):
        v = cfg.get(key)
        if isinstance(v, str) and v:
            p = Path(v).expanduser().resolve()
            p = p if p.is_dir() else p.parent
            if p.is_dir():
                roots.append(p)
    out: list[Path] = []
    for r in roots:
        if r not in out:
            out.append(r)
    return out


class _Site:
    """Request handlers bound to one opened source."""

    def __init__(self, source, image_roots: Sequence[str | Path], templates) -> None:
        self.source = source
        self.roots = _roots(source, image_roots)
        self.templates = templates

    # ---- helpers
    def render(self, request, template: str, status: int = 200, **ctx):
        ctx.setdefault("title", self.source.root.name)
        ctx.update(request=request, source=self.source, kind=self.source.kind)
        return self.templates.TemplateResponse(request, template, ctx, status_code=status)

    def thumb(self, ref: Any) -> str | None:
        """The ``/file/...`` URL of ``ref`` when it names a local image under a root."""
        if not isinstance(ref, str) or not ref:
            return None
        if ref.startswith("file://"):
            ref = unquote(urlsplit(ref).path)
        elif "://" in ref:
            return None
        p = Path(ref)
        for i, root in enumerate(self.roots):
            try:
                cand = (p if p.is_absolute() else root / p).resolve()
                rel = cand.relative_to(root)
            except (ValueError, OSError):
                continue
            if cand.suffix.lower() in IMAGE_SUFFIXES and cand.is_file():
                return f"/file/{i}/{rel.as_posix()}"
        return None

    def paging(self, request) -> tuple[int, int]:
        page = _int_param(request, "page", 1, 1)
        per_page = _int_param(request, "per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE)
        return page, per_page

    @staticmethod
    def link(path: str, **params) -> str:
        q = {k: v for k, v in params.items() if v not in (None, "")}
        return path + ("?" + urlencode(q) if q else "")

    def pager(self, request, path: str, page: int, per_page: int, total, has_more, **params):
        n_pages = None if total is None else max(1, math.ceil(total / per_page))
        prev_url = self.link(path, page=page - 1, per_page=per_page, **params) if page > 1 else None
        next_url = self.link(path, page=page + 1, per_page=per_page, **params) if has_more else None
        return {
            "offset": (page - 1) * per_page,
            "page": page,
            "n_pages": n_pages,
            "total": total,
            "prev": prev_url,
            "next": next_url,
        }

    def decorate(self, rows: list[dict]) -> list[dict]:
        for r in rows:
            url = r.get("url")
            r["_thumb"] = self.thumb(url)
            r["_href"] = (
                url if isinstance(url, str) and url.startswith(("http://", "https://")) else None
            )
        return rows

    # ---- pages
    async def index(self, request):
        if isinstance(self.source, CorpusSource):
            return await self.corpus_search(request)
        s: RunSource = self.source
        steps, rows = s.step_table()
        heads = s.heads()
        per_class = [
            {"name": c, "acc": [h["per_class"].get(c) for h in heads], "size": s.pool_size(c)}
            for c in s.classes
        ]
        pairs = s.predictions.confused_pairs() if s.predictions is not None else []
        return self.render(
            request,
            "overview.html",
            steps=steps,
            step_rows=rows,
            heads=heads,
            per_class=per_class,
            alpha=s.alpha(),
            pairs=pairs,
            pool_total=s.pool.n_rows if s.pool is not None else 0,
            n_dropped=s.dropped.n_rows if s.dropped is not None else None,
            n_heldout=s.heldout.n_rows if s.heldout is not None else None,
            metrics=s.metrics,
        )

    def _class_name(self, request) -> str:
        name = request.query_params.get("name", "")
        if name not in self.source.classes:
            raise LookupError(f"no class {name!r} in this run")
        return name

    async def class_page(self, request):
        if not isinstance(self.source, RunSource):
            raise LookupError("this folder is a corpus: it has no classes")
        s: RunSource = self.source
        name = self._class_name(request)
        view = request.query_params.get("view", "pool")
        views = {"pool": s.pool, "dropped": s.dropped, "heldout": s.heldout}
        page, per_page = self.paging(request)
        offset = (page - 1) * per_page
        ctx: dict[str, Any] = {"name": name, "view": view, "title": name}
        if view == "errors":
            errs = s.predictions.errors_of(name) if s.predictions is not None else []
            chunk = errs[offset : offset + per_page]
            for e in chunk:
                e["_thumb"] = self.thumb(e["id"])
            ctx.update(errors=chunk, n_errors=len(errs))
            total, has_more = len(errs), offset + per_page < len(errs)
        elif view in views:
            table = views[view]
            cols = list(STEP_COLUMNS) if view == "dropped" else s.pool_columns()
            if table is None:
                rows, total, has_more = [], 0, False
            else:
                pg = table.page(offset, per_page, cols, group=name)
                rows, total, has_more = self.decorate(pg.rows), pg.total, pg.has_more
            ctx.update(rows=rows, columns=[c for c in cols if c != "class"], missing=table is None)
        else:
            raise BadRequest(f"view must be one of pool, dropped, heldout, errors; got {view!r}")
        ctx["pager"] = self.pager(
            request, "/class", page, per_page, total, has_more, name=name, view=view
        )
        ctx["counts"] = {
            "pool": s.pool_size(name),
            "dropped": s.dropped.count(name) if s.dropped is not None else None,
            "heldout": s.heldout.count(name) if s.heldout is not None else None,
            "errors": len(s.predictions.errors_of(name)) if s.predictions is not None else None,
        }
        return self.render(request, "class.html", **ctx)

    async def search(self, request):
        if isinstance(self.source, CorpusSource):
            return await self.corpus_search(request)
        s: RunSource = self.source
        q = request.query_params.get("q", "").strip()
        cls = request.query_params.get("class") or None
        if cls is not None and cls not in s.classes:
            raise LookupError(f"no class {cls!r} in this run")
        page, per_page = self.paging(request)
        offset = (page - 1) * per_page
        rows, total, has_more = [], 0, False
        cols = s.pool_columns() + ["class_name"]
        if q and s.pool is not None:
            pg = s.pool.search("caption", q, offset, per_page, cols, group=cls)
            rows, total, has_more = self.decorate(pg.rows), pg.total, pg.has_more
        pager = self.pager(
            request, "/search", page, per_page, total, has_more, q=q, **{"class": cls}
        )
        return self.render(
            request,
            "search.html",
            q=q,
            cls=cls,
            rows=rows,
            columns=cols,
            pager=pager,
            title=f"search: {q}" if q else "search",
        )

    async def corpus_search(self, request):
        s: CorpusSource = self.source
        q = request.query_params.get("q", "").strip()
        mode = request.query_params.get("mode", "all_tokens")
        if mode not in ("all_tokens", "phrase"):
            raise BadRequest(f"mode must be all_tokens or phrase, got {mode!r}")
        page, per_page = self.paging(request)
        offset = (page - 1) * per_page
        if offset > MAX_CORPUS_OFFSET:
            raise BadRequest(
                f"corpus search pages stop at item {MAX_CORPUS_OFFSET}: narrow the query"
            )
        rows, has_more, message = [], False, None
        if q:
            try:
                rows, has_more = s.search(q, offset, per_page, mode=mode)
            except PrimingError as exc:
                message = str(exc)
        pager = self.pager(request, "/search", page, per_page, None, has_more, q=q, mode=mode)
        cols = ["row_id", "caption", "url", "similarity"]
        return self.render(
            request,
            "corpus.html",
            q=q,
            mode=mode,
            rows=self.decorate(rows),
            columns=cols,
            pager=pager,
            message=message,
            n_rows=s.corpus.n_rows,
        )

    async def file(self, request):
        """A local image under one of the roots; anything else is 404."""
        from starlette.responses import FileResponse

        i = int(request.path_params["root"])
        rel = request.path_params["rel"]
        if not 0 <= i < len(self.roots):
            raise LookupError("no such file")
        root = self.roots[i]
        try:
            p = (root / rel).resolve()
            p.relative_to(root)
        except (ValueError, OSError):
            raise LookupError("no such file") from None
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            raise LookupError("no such file")
        if p.stat().st_size > MAX_IMAGE_BYTES:
            raise LookupError("no such file")
        return FileResponse(p)


def create_app(
    path: str | Path,
    image_roots: Sequence[str | Path] = (),
    allowed_hosts: Sequence[str] | None = None,
):
    """The browser app over the run, pool or corpus folder ``path``.

    ``image_roots``: more folders thumbnails may come from. ``allowed_hosts``: the
    ``Host`` headers answered (a guard against DNS rebinding); None answers any.
    """
    require("starlette", "browse")
    jinja2 = require("jinja2", "browse")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from starlette.templating import Jinja2Templates

    source = open_source(path)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    )
    env.filters["num"] = _fmt_num
    templates = Jinja2Templates(env=env)
    site = _Site(source, image_roots, templates)
    env.globals["link"] = site.link

    async def not_found(request, exc):
        return site.render(request, "error.html", status=404, message=str(exc), title="not found")

    async def bad_request(request, exc):
        return site.render(request, "error.html", status=400, message=str(exc), title="bad request")

    middleware = [Middleware(_SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    get = ["GET"]
    app = Starlette(
        routes=[
            Route("/", site.index, methods=get),
            Route("/class", site.class_page, methods=get),
            Route("/search", site.search, methods=get),
            Route("/file/{root:int}/{rel:path}", site.file, methods=get),
            Mount("/static", StaticFiles(directory=str(_HERE / "static")), name="static"),
        ],
        middleware=middleware,
        exception_handlers={LookupError: not_found, BadRequest: bad_request},
    )
    app.state.site = site
    return app


def _fmt_num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.{digits}f}"
    return str(v)
