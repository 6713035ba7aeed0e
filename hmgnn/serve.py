"""`hmgnn serve`: the recommender as an HTTP API (FastAPI + uvicorn), fit once at startup on model/ + tables/ (the
model in memory, `LoadedModel`, is hmgnn/loaded.py's, shared with `hmgnn.load`).

Requests read one immutable `LoadedModel`; a reload builds the next one aside and swaps the reference under a lock.
GET /recommendations/{id} goes through the `Scorer` threads, which rank the requests waiting together as a batch."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import errno
import hmac
import logging
import os
import queue
import re
import secrets
import signal
import socket
import threading
import time
from typing import Any, Callable

import torch

from hmgnn import __version__
from hmgnn.artifacts import article_label
from hmgnn.config import MAX_K, Config
from hmgnn.errors import HmgnnError
from hmgnn.recommend import check_customer_id, check_k
from hmgnn.loaded import LoadedModel, load

try:
    from fastapi import FastAPI, HTTPException, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, Field
except ModuleNotFoundError as exc:  # the API is an optional extra; say how to get it
    raise HmgnnError(f"hmgnn serve needs the serve extra ({exc.name} is missing): pip install 'hmgnn[serve]'") from None

log = logging.getLogger("hmgnn.serve")

ARTICLE_ID = re.compile(r"[0-9]{1,10}")
LOOPBACK = frozenset({"127.0.0.1", "::1"})
LOOPBACK_NAMES = LOOPBACK | {"localhost"}
RELOAD_TOKEN_ENV = "HMGNN_RELOAD_TOKEN"
"""Environment variable with the token POST /admin/reload needs when the server listens beyond loopback."""
EMBEDDING_MODELS = "gnn or reference"
BYTES_PER_ID = 128  # a quoted 64-hex id plus generous whitespace: bounds a batch body before it is parsed
SCORER_BATCH = 16  # most GET requests ranked together: bounds the wait of the last one in a batch


# ---- response models (what /docs shows) ---------------------------------------------------------------------
class Problem(BaseModel):
    """Every error: one line that says what was wrong and what a valid request looks like."""

    detail: str = Field(examples=["customer id must be 64 hexadecimal characters (as in customers.csv), got 'x'"])


class Article(BaseModel):
    article_id: str = Field(description="10-digit zero-padded article id", examples=["0108775015"])
    prod_name: str | None = Field(description="Product name", examples=["Strap top"])
    product_type_name: str | None = Field(description="Product type", examples=["Vest top"])
    colour_group_name: str | None = Field(description="Colour", examples=["Black"])


class RankedArticle(Article):
    rank: int = Field(description="1 = best")
    score: float = Field(description="The model's score (rounded to 6 decimals); for similar articles, the cosine")


class RecommendedArticle(RankedArticle):
    why: str = Field(description="What ranked the article, in one sentence", examples=["bought 3 times, last on "
                                                                                       "2020-09-10"])
    sources: list[str] = Field(description="The candidate sources that proposed it, strongest first (gnn, bought, "
                                           "variant, popular, trending, walk); empty when none did",
                               examples=[["bought", "walk"]])


class Recommendations(BaseModel):
    """One customer's top-k, shaped as `hmgnn recommend --json` prints it, plus `cold_start`."""

    customer_id: str = Field(description="The id asked for, lower-cased")
    model: str
    k: int
    cold_start: bool = Field(description="True when the cold-start fallback answered instead of the model")
    fallback: str | None = Field(description="Why the fallback was used; null when the model ranked itself")
    recommendations: list[RecommendedArticle]


class BatchRequest(BaseModel):
    customer_ids: list[str] = Field(description="Customer ids (64 hex characters each); at most serve.max_batch",
                                    examples=[["00000dbacae5abe5e23885899a1fa44253a17956c6d1c3d25f88aa139fdfc657"]])
    k: int = Field(12, ge=1, le=MAX_K, description="Articles per customer")
    filter_bought: bool = Field(False, description="Leave out articles the customer already bought")


class BatchRecommendations(BaseModel):
    model: str
    results: list[Recommendations] = Field(description="One entry per requested id, in request order")


class SimilarArticles(BaseModel):
    article: Article
    model: str
    k: int
    similar: list[RankedArticle] = Field(description="Closest articles by cosine of the learned embeddings")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    model: str
    model_fingerprint: str | None = Field(description="Fingerprint of the checkpoint (model.pt); null for a "
                                                      "baseline, which has no file and is fit at startup")
    data_fingerprint: str = Field(description="Fingerprint of tables/transactions.parquet the model was fit on")
    hmgnn_version: str
    as_of: dt.date = Field(description="Last purchase day in the data the model was fit on")
    loaded_at: dt.datetime
    customers: int
    articles: int


class ReloadResult(BaseModel):
    previous_fingerprint: str | None
    model_fingerprint: str | None
    data_fingerprint: str
    seconds: float = Field(description="Time spent loading and fitting the new model")


# ---- holding the served model (built by hmgnn/loaded.py) and reloading it ---------------------------------

class ReloadBusy(Exception):
    """A reload is already running."""


class ModelHolder:
    """The one reference to the served model. A request reads `current` once and keeps that model to the end,
    so a reload never changes the model under a request in flight; `reload` fits the next model aside."""

    def __init__(self, cfg: Config | None, served: LoadedModel | None = None,
                 loader: Callable[[Config], LoadedModel] = load) -> None:
        self.loader = loader
        self._current = served if served is not None else loader(cfg)
        # `auto` is resolved once: a reload keeps the model the server started with (a vanished checkpoint is
        # then a failed reload, not a silent switch to a baseline)
        self.cfg = (dataclasses.replace(cfg, serve=dataclasses.replace(cfg.serve, model=self._current.name))
                    if cfg is not None else None)
        self._swap = threading.Lock()
        self._reloading = threading.Lock()

    @property
    def current(self) -> LoadedModel:
        return self._current

    def reload(self) -> tuple[LoadedModel, LoadedModel]:
        """Load the artifacts again and switch to them: (old, new). A failed load leaves the old one serving."""
        if not self._reloading.acquire(blocking=False):
            raise ReloadBusy
        try:
            new = self.loader(self.cfg)  # the slow part, outside the swap lock: requests go on meanwhile
            with self._swap:
                old, self._current = self._current, new
            log.info("reloaded %s: %s -> %s", new.name, old.model_fingerprint or old.data_fingerprint,
                     new.model_fingerprint or new.data_fingerprint)
            return old, new
        finally:
            self._reloading.release()


class Scorer:
    """Dynamic micro-batching for GET /recommendations: `threads` threads take the waiting requests off one queue,
    up to `max_batch` at a time, and rank each lot together.

    No timer: a lone request is ranked at once, and under load a batch grows with the queue, so the per-batch work
    (the already-bought filter, the top-k, Python and torch call overhead) is shared by several requests. The event loop only
    parses, queues and answers; torch releases the GIL while it ranks, so the threads and the loop run in parallel.
    """

    def __init__(self, max_batch: int = SCORER_BATCH, threads: int = 1) -> None:
        self.max_batch, self.threads = max_batch, threads
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._started = False
        self._start = threading.Lock()

    async def recommend(self, served: LoadedModel, customer_id: str, k: int, filter_bought: bool) -> bytes:
        """`served.recommend_json` for one request, ranked in the next batch."""
        if not self._started:
            with self._start:
                if not self._started:
                    for n in range(self.threads):
                        threading.Thread(target=self._run, name=f"hmgnn-scorer-{n}", daemon=True).start()
                    self._started = True
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((served, (customer_id, k, filter_bought), loop, future))
        return await future

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            # each request keeps the model it read: a reload may have swapped it between two requests
            groups: dict[int, list] = {}
            for item in batch:
                groups.setdefault(id(item[0]), []).append(item)
            settled: dict[asyncio.AbstractEventLoop, list] = {}
            for items in groups.values():
                for (_, _, loop, future), result in zip(items, self._answer(items)):
                    settled.setdefault(loop, []).append((future, result))
            for loop, results in settled.items():
                try:
                    loop.call_soon_threadsafe(_settle, results)
                except RuntimeError:  # that loop has been closed: nobody waits for these answers any more
                    pass

    @staticmethod
    def _answer(items: list) -> list[bytes | Exception]:
        served = items[0][0]
        try:
            return served.recommend_json([ask for _, ask, _, _ in items])
        except Exception as exc:
            if len(items) == 1:
                return [exc]
        # one failing request must not fail the others: rank them one by one
        return [result for item in items for result in Scorer._answer([item])]


def _settle(results: list[tuple[asyncio.Future, bytes | Exception]]) -> None:
    for future, result in results:
        if future.done():  # the client went away and the request was cancelled
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)


# ---- the HTTP app -------------------------------------------------------------------------------------------
def check_article_id(text: str) -> int:
    if not ARTICLE_ID.fullmatch(text):
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise HTTPException(422, f"article id must be up to 10 digits (as in articles.csv, e.g. 0108775015), "
                                 f"got {shown!r}")
    return int(text)


def _k(k: int, served: LoadedModel, where: str = "k") -> int:
    """`k` within the catalogue, as the CLI and the Python API check it (FastAPI has checked 1 <= k <= MAX_K)."""
    try:
        return check_k(k, served.model.n_articles, where)
    except HmgnnError as exc:
        raise HTTPException(422, str(exc)) from None


def _customer_id(text: str) -> str:
    try:
        return check_customer_id(text)
    except HmgnnError as exc:
        raise HTTPException(422, str(exc)) from None


class BodyLimit:
    """ASGI middleware: refuse request bodies over `limit` bytes with 413 before they are read into memory."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        detail = f"request body over {self.limit:,} bytes; send fewer customer ids per call"
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await JSONResponse({"detail": detail}, 413)(scope, receive, send)
        seen = 0

        async def bounded() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # a chunked body has no content-length: count as it arrives
                raise HTTPException(413, detail)
            return message

        await self.app(scope, bounded, send)


def _where(loc: tuple | list) -> str:
    # "k" for a query parameter, "customer_ids.3" inside the body; "body.12" is a position in unparsable JSON
    named = len(loc) > 1 and loc[0] in ("query", "path", "body") and isinstance(loc[1], str)
    return ".".join(str(p) for p in (loc[1:] if named else loc))


ERRORS: dict[int | str, dict[str, Any]] = {422: {"model": Problem, "description": "Malformed id or parameter"}}


def scorer_threads(threads: int) -> int:
    """`serve.threads` as set, or for 0 half the cores (at least one): the other half serve the event loop."""
    return threads or max(1, (os.cpu_count() or 1) // 2)


def create_app(holder: ModelHolder, max_batch: int = 1_000, threads: int = 1,
               reload_token: str | None = None) -> FastAPI:
    """The API over `holder`'s model, `threads` threads ranking GET /recommendations; every error is a JSON
    `{"detail": ...}` without internals."""
    app = FastAPI(title="hmgnn", version=__version__,
                  description="Top-k H&M articles per customer from a graph neural network (or a baseline), "
                              "similar articles by learned embeddings, and a hot model reload.")
    app.add_middleware(BodyLimit, limit=max_batch * BYTES_PER_ID + 4096)
    scorer = Scorer(threads=threads)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # one line, like every other error here (FastAPI's default echoes the whole input back)
        parts = [f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
        return JSONResponse({"detail": "; ".join(parts)}, 422)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        # no internals for the client; uvicorn logs the traceback after this handler has answered
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return JSONResponse({"detail": "internal server error; the server log has the details"}, 500)

    @app.get("/health", response_model=Health, summary="Model, fingerprints, data date and sizes")
    async def health() -> dict[str, Any]:
        return holder.current.health()

    # `async def` that waits for the scorer thread: no thread pool hop, and the response is already JSON
    # (FastAPI passes a Response through; `response_model` still documents it)
    @app.get("/recommendations/{customer_id}", response_model=Recommendations, responses=ERRORS,
             summary="Top-k articles for one customer")
    async def recommendations(
            customer_id: str,
            k: int = Query(12, ge=1, le=MAX_K, description="Number of articles"),
            filter_bought: bool = Query(False, description="Leave out articles the customer already bought"),
    ) -> Response:
        """An unknown (well-formed) id gets this week's bestsellers, with `cold_start` true and the reason."""
        served = holder.current
        body = await scorer.recommend(served, _customer_id(customer_id), _k(k, served), filter_bought)
        return Response(body, media_type="application/json")

    # plain `def` (thread pool): a big batch ranks for long and must not stall the event loop
    @app.post("/recommendations", response_model=BatchRecommendations,
              responses={**ERRORS, 413: {"model": Problem, "description": "Too many ids"}},
              summary="Top-k articles for a batch of customers")
    def batch(body: BatchRequest) -> dict[str, Any]:
        if len(body.customer_ids) > max_batch:
            raise HTTPException(413, f"{len(body.customer_ids):,} customer ids in one call; send at most "
                                     f"{max_batch:,} (serve.max_batch)")
        ids = []
        for n, text in enumerate(body.customer_ids):
            try:
                ids.append(check_customer_id(text))
            except HmgnnError as exc:
                raise HTTPException(422, f"customer_ids[{n}]: {exc}") from None
        served = holder.current
        return {"model": served.name, "results": served.recommend_many(ids, _k(body.k, served), body.filter_bought)}

    @app.get("/articles/{article_id}/similar", response_model=SimilarArticles,
             responses={**ERRORS, 404: {"model": Problem, "description": "Unknown article"},
                        409: {"model": Problem, "description": "The served model has no article embeddings"}},
             summary="Articles closest to this one in the learned embedding space")
    def similar(article_id: str,
                k: int = Query(12, ge=1, le=MAX_K, description="Number of articles")) -> dict[str, Any]:
        """Cosine similarity of the GNN's article embeddings. A baseline has none: 409 (serve `--model gnn`)."""
        number = check_article_id(article_id)
        served = holder.current
        k = _k(k, served)
        index = served.article_index.get(number)
        if index is None:
            raise HTTPException(404, f"article {article_label(number)} is not in tables/articles.parquet")
        if served.unit_embeddings is None:
            raise HTTPException(409, f"model '{served.name}' has no article embeddings; similar articles need "
                                     f"a trained model: restart with `hmgnn serve --model gnn` ({EMBEDDING_MODELS})")
        return {"article": served.article_rows[index], "model": served.name, "k": k,
                "similar": served.similar(index, k)}

    @app.post("/admin/reload", response_model=ReloadResult,
              responses={403: {"model": Problem, "description": "Not from this machine"},
                         409: {"model": Problem, "description": "Reload failed or already running"}},
              summary="Load the workdir's artifacts again and switch to them (loopback only)")
    def reload(request: Request) -> dict[str, Any]:
        """Fits the new model aside while the old one keeps answering, then swaps; a failure keeps the old one."""
        if request.client is None or request.client.host not in LOOPBACK:
            raise HTTPException(403, "reload is only accepted from this machine (127.0.0.1 or ::1)")
        refused = cross_site(request.headers.get("host"), request.headers.get("origin"))
        if refused:
            raise HTTPException(403, refused)
        if reload_token is not None and not hmac.compare_digest(
                request.headers.get("authorization", "").encode(), f"Bearer {reload_token}".encode()):
            raise HTTPException(403, f"the server listens beyond this machine: reload needs the "
                                     f"'Authorization: Bearer <{RELOAD_TOKEN_ENV}>' header given at start-up "
                                     "(or send SIGHUP)")
        start = time.perf_counter()
        try:
            old, new = holder.reload()
        except ReloadBusy:
            raise HTTPException(409, "a reload is already running; try again when it has finished") from None
        except HmgnnError as exc:
            raise HTTPException(409, f"reload failed, still serving the previous model: {exc}") from None
        except Exception as exc:  # e.g. a corrupt model.pt: the details stay in the server log
            log.exception("reload failed")
            raise HTTPException(409, f"reload failed ({type(exc).__name__}), still serving the previous model; "
                                     "the server log has the details") from None
        return {"previous_fingerprint": old.model_fingerprint, "model_fingerprint": new.model_fingerprint,
                "data_fingerprint": new.data_fingerprint, "seconds": round(time.perf_counter() - start, 3)}

    return app


_AUTHORITY = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9.-]+))(?::(?P<port>[0-9]{1,5}))?")
"""A Host header or an Origin's authority as browsers and HTTP clients send it: a name, an IPv4 address or a
bracketed IPv6 address, then an optional port; no user info (`127.0.0.1:1@evil.example`), no path, nothing else."""


def _hostname(authority: str) -> str | None:
    """The host part of a Host header or an Origin's authority (`[::1]:8000` -> `::1`, `localhost:80` ->
    `localhost`), or None when it is not strictly hostname[:port] with a port of 1 to 65535."""
    m = _AUTHORITY.fullmatch(authority)
    if m is None or (m["port"] is not None and not 0 < int(m["port"]) < 65536):
        return None
    return m["ipv6"] or m["name"]


def cross_site(host: str | None, origin: str | None) -> str | None:
    """Why a reload request must be refused, or None. A web page open in a local browser can send a POST to
    127.0.0.1; its browser then sets an Origin of that page (and, through DNS rebinding, a Host of the attacker's
    name), so both must name this machine. Tools such as curl send no Origin."""
    if host is None or _hostname(host.strip().lower()) not in LOOPBACK_NAMES:
        return f"reload needs a Host of this machine (localhost, 127.0.0.1 or [::1]), got {host!r}"
    if origin is not None:
        scheme, _, authority = origin.strip().lower().partition("://")
        if scheme not in ("http", "https") or _hostname(authority) not in LOOPBACK_NAMES:
            return f"reload is not accepted from another site (Origin {origin!r})"
    return None


def _reload_in_background(holder: ModelHolder) -> None:
    def work() -> None:
        try:
            holder.reload()
        except ReloadBusy:
            log.warning("SIGHUP: a reload is already running; ignored")
        except Exception as exc:  # the old model keeps serving either way
            log.error("SIGHUP reload failed, still serving the previous model: %s", exc)

    threading.Thread(target=work, name="hmgnn-reload", daemon=True).start()


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus our own logger (reloads, errors) on the same handler."""
    import uvicorn.config

    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["hmgnn"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port for uvicorn to listen on. Bound here, before the model loads, so that a busy
    port is one error line naming it at once (uvicorn's own bind would exit 3 with its log text, after the load)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart need not wait for TIME_WAIT
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise HmgnnError(f"port {port} on {host} is already in use (another server?); pass --port with a free "
                             "port, or stop the program that holds it") from None
        raise HmgnnError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host and --port") from None
    sock.set_inheritable(True)
    return sock


def run(cfg: Config) -> None:
    """Bind the port and load the model (errors surface here, before anything is served), then serve until
    interrupted."""
    sc = cfg.serve
    sock = bind(sc.host, sc.port)
    try:
        _serve(cfg, sock)
    finally:
        sock.close()


def _serve(cfg: Config, sock: socket.socket) -> None:
    from hmgnn.console import console, info

    sc = cfg.serve
    holder = ModelHolder(cfg)
    # parallelism comes from the serve.threads scorer threads, each ranking on one core: intra-op threads would
    # only spin against them, the event loop and the clients (a reload then fits on one thread too: slower, but
    # aside while the old model answers)
    torch.set_num_threads(1)
    beyond_loopback = sc.host not in LOOPBACK_NAMES
    # bound beyond this machine, a reload also needs the token given at start-up (none set: no HTTP reload at all)
    token = (os.environ.get(RELOAD_TOKEN_ENV) or secrets.token_hex(32)) if beyond_loopback else None
    app = create_app(holder, sc.max_batch, scorer_threads(sc.threads), reload_token=token)
    if hasattr(signal, "SIGHUP"):  # the signal handler only starts a thread: the loop keeps answering
        signal.signal(signal.SIGHUP, lambda signum, frame: _reload_in_background(holder))
    if beyond_loopback:
        reload = ("POST /admin/reload needs the HMGNN_RELOAD_TOKEN given at start-up"
                  if os.environ.get(RELOAD_TOKEN_ENV)
                  else "POST /admin/reload is off (start with HMGNN_RELOAD_TOKEN set to allow it; SIGHUP works)")
        console.print(f"[yellow]warning:[/yellow] serving on {sc.host}: the API (without authentication) is "
                      f"reachable from other machines; use --host 127.0.0.1 to keep it local; {reload}",
                      highlight=False)
    served = holder.current
    info(f"[green]serve[/green] {served.name} ({served.model.n_customers:,} customers, {served.model.n_articles:,} "
         f"articles, data as of {served.model.as_of}) on http://{sc.host}:{sc.port} (docs: /docs)")
    listen(app, sock, host=sc.host, port=sc.port, log_config=_log_config(), access_log=sc.access_log)


def listen(app: FastAPI, sock: socket.socket, **settings: Any) -> None:
    """uvicorn serving `app` on the bound `sock` until interrupted (`settings`: uvicorn.Config's)."""
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, **settings)).run(sockets=[sock])
