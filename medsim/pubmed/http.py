"""A small HTTP layer for NCBI services: rate limit, retries, an on-disk cache, fast offline.

Biopython's ``Bio.Entrez`` HTTP helpers hard-code NCBI's hosts, so medsim does its own requests
(stdlib ``urllib``) against configurable base URLs and parses the answers with lxml. Every
request of a run goes through one :class:`NcbiHttp`, so one :class:`RateLimiter` covers them all
(NCBI allows 3 requests/s without an API key, 10/s with one; NCBI counts arrivals, so requests
are paced a margin under that, :data:`PACING_MARGIN`). NCBI's answer to a request over the limit
is HTTP 429 with a JSON body (``{"error":"API rate limit exceeded","api-key":"<ip>","count":"5",
"limit":"3"}``) and no ``Retry-After``: it is retried with backoff like a 5xx. An invalid
``NCBI_API_KEY`` is answered HTTP 400 ``{"error":"API key invalid",...}``: one line naming the key.

A response is written to the cache only after the caller's ``check`` accepted it (for XML: it
parsed), and atomically, so an interrupted run resumes where it stopped and never fetches a
cached request twice. Answers that change as NCBI's data grows (``AGEING_CATEGORIES``: searches,
"not in PMC" answers, bucket metadata) are asked again once older than the cache's ``max_age_s``
(``fetch.refresh_days``); when asking again fails, the older answer is kept, with a warning.
"""

from __future__ import annotations

import contextlib
import email.utils
import errno
import http.client
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import TypeVar

from medsim.errors import MedsimError
from medsim.pubmed.cache import ResponseCache

__all__ = [
    "BadResponse",
    "DamagedResponseError",
    "FetchError",
    "HttpStats",
    "NcbiHttp",
    "OfflineError",
    "RateLimiter",
    "Rejected",
    "ResponseCache",
    "RetryPolicy",
    "StatusError",
    "TransientAnswer",
    "default_rate",
    "ncbi_identity",
    "paced_rate",
    "remember_failures",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

TOOL = "medsim"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_OFFLINE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED})
# NCBI counts request arrivals per second at its end: starts exactly 1/3 s apart can arrive
# closer than that (a slow request then a fast one). 15 % under the limit absorbs 150 ms of jitter
# over three requests at 3/s and costs 15 % of throughput.
PACING_MARGIN = 0.85

OFFLINE_HINT = (
    "To run without internet, use a local corpus: set `fetch.source: local` and "
    "`fetch.local.path` in params.yaml, e.g. "
    "`dvc exp run -S fetch.source=local -S fetch.local.path=/data/pubmed-baseline` for a folder "
    "of PubMed XML such as NLM's annual baseline."
)


class OfflineError(MedsimError):
    """The first request could not reach the server at all (DNS, refused, unreachable)."""


class FetchError(MedsimError):
    """A request that still failed after every retry, or that the server refused for good."""


class DamagedResponseError(FetchError):
    """Every try got a damaged body (say, XML that does not parse): maybe the content itself."""


class StatusError(FetchError):
    """A non-retryable HTTP status (404, 400, ...)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BadResponse(Exception):
    """Raised by a response ``check``: the body is damaged (truncated XML); retry the request."""


class TransientAnswer(BadResponse):
    """Raised by a ``check``: a well-formed error answer the server gives under load (an
    E-utilities ``<ERROR>Search Backend failed ...``). Retried like a damaged body, but when every
    try fails the request fails as a plain :class:`FetchError`: the content is not at fault."""


class Rejected(Exception):
    """Raised by a response ``check`` or a size cap: the body is well-formed but unusable.

    Not retried (the same request would get the same answer); the caller decides what to skip.
    """


def remember_failures() -> bool:
    """Whether remembered failures are honoured; ``MEDSIM_RETRY_FAILED=1`` asks again."""
    return os.environ.get("MEDSIM_RETRY_FAILED", "").strip().lower() in ("", "0", "false", "no")


def ncbi_identity() -> dict[str, str]:
    """``tool``, ``email`` and ``api_key`` parameters, from ``NCBI_EMAIL`` / ``NCBI_API_KEY``.

    They come from the environment only, never from params.yaml, so they stay out of git.
    """
    identity = {"tool": TOOL}
    if email_addr := os.environ.get("NCBI_EMAIL", "").strip():
        identity["email"] = email_addr
    if api_key := os.environ.get("NCBI_API_KEY", "").strip():
        identity["api_key"] = api_key
    return identity


def default_rate(identity: Mapping[str, str]) -> float:
    """NCBI's limit: 10 requests/s with an API key, 3/s without."""
    return 10.0 if identity.get("api_key") else 3.0


def paced_rate(identity: Mapping[str, str]) -> float:
    """The rate requests start at: NCBI's limit less :data:`PACING_MARGIN`."""
    return default_rate(identity) * PACING_MARGIN


class RateLimiter:
    """At most ``per_second`` request starts per second (a minimum interval), thread-safe."""

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        self.interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until the next request may start, and book that slot."""
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: ``base_delay_s * 2**attempt``, capped at ``max_delay_s``."""

    tries: int = 6
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    timeout_s: float = 60.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * 2**attempt)


@dataclass
class HttpStats:
    """Counts a run reports: requests sent, cache hits and retries, by request category
    (esearch, efetch, a bucket file, ...)."""

    requests: Counter[str] = field(default_factory=Counter)
    cache_hits: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    expired: Counter[str] = field(default_factory=Counter)  # cached answers asked again

    def describe(self) -> str:
        return (
            f"requests {dict(self.requests)}, cache hits {dict(self.cache_hits)}, "
            f"retries {dict(self.retries)}, expired {dict(self.expired)}"
        )


def _offline_cause(exc: BaseException) -> bool:
    """DNS failure, connection refused or network unreachable: nobody is there to answer."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror | ConnectionRefusedError):
        return True
    return isinstance(reason, OSError) and reason.errno in _OFFLINE_ERRNOS


def _retry_after(headers: Message | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    with contextlib.suppress(ValueError):  # delta-seconds form; else an HTTP date
        return max(0.0, float(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_body(exc: urllib.error.HTTPError) -> str:
    """NCBI's JSON error message of an HTTP error (``{"error": "..."}``), else ''."""
    try:
        answer = json.loads(exc.read(4096) or b"{}")
    except (OSError, ValueError, http.client.HTTPException):
        return ""
    if not isinstance(answer, dict) or not answer.get("error"):
        return ""
    extra = f" ({answer['count']} requests, limit {answer['limit']}/s)" if "limit" in answer else ""
    return f"{answer['error']}{extra}"


class NcbiHttp:
    """Rate-limited, retrying, caching HTTP client shared by every request of a fetch run."""

    def __init__(
        self,
        cache: ResponseCache | None,
        *,
        identity: Mapping[str, str] | None = None,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cache = cache
        self.identity = dict(ncbi_identity() if identity is None else identity)
        self.limiter = limiter or RateLimiter(paced_rate(self.identity))
        self.retry = retry or RetryPolicy()
        self.stats = HttpStats()
        self._sleep = sleep
        self._reached = False  # some request got an answer: later network errors are transient
        contact = f" (mailto:{self.identity['email']})" if "email" in self.identity else ""
        self.user_agent = f"{TOOL}{contact}"

    def request(
        self,
        category: str,
        url: str,
        params: Mapping[str, str] | None = None,
        *,
        check: Callable[[bytes, Message], T],
        method: str = "GET",
        identify: bool = True,
        cache: bool = True,
        max_bytes: int | None = None,
        ext: str = "xml",
        fresh: bool = False,
    ) -> T:
        """Send one request (answered from the cache when possible) and return ``check``'s value.

        ``check(body, headers)`` parses the body; it raises :class:`BadResponse` for a damaged
        body (retried) or :class:`Rejected` for an unusable one (not retried, not cached).
        Retried with backoff: HTTP 429 (honouring ``Retry-After``) and 5xx, timeouts, resets,
        truncated bodies. A body over ``max_bytes`` raises :class:`Rejected` unread past the cap.
        ``ext`` names the cached file's type; ``fresh`` asks again even when the answer is cached
        (and caches the new one); so does an ageing answer past the cache's ``max_age_s``.
        """
        params = dict(params or {})
        cache_path = expired = None
        if cache and self.cache is not None:
            endpoint = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
            cache_path = self.cache.path(category, ResponseCache.key(endpoint, params), ext)
            cached = self.cache.get(cache_path)
            if cached is not None and (fresh or self.cache.stale(cache_path, category)):
                self.stats.expired[category] += 1
                expired, cached = cached, None
            if cached is not None:
                try:
                    value = check(cached, Message())
                except (BadResponse, Rejected):
                    log.warning("discarding unreadable cache entry %s", cache_path)
                else:
                    self.stats.cache_hits[category] += 1
                    return value
        if identify:
            params.update(self.identity)
        try:
            value, raw = self._send_with_retries(category, url, params, method, check, max_bytes)
        except (OfflineError, FetchError) as exc:
            if expired is None or isinstance(exc, StatusError):
                raise
            # an old answer beats none: the run goes on as it would have before the refresh
            log.warning(
                "%s: asking again failed (%s); keeping the older cached answer", category, exc
            )
            return check(expired, Message())
        if cache_path is not None:
            self.cache.put(cache_path, raw)
        return value

    def _send_with_retries(
        self,
        category: str,
        url: str,
        params: dict[str, str],
        method: str,
        check: Callable[[bytes, Message], T],
        max_bytes: int | None,
    ) -> tuple[T, bytes]:
        last: str = ""
        damaged = False
        for attempt in range(self.retry.tries):
            wait: float | None = None
            damaged = False
            try:
                raw, headers = self._send(category, url, params, method, max_bytes)
                return check(raw, headers), raw
            except urllib.error.HTTPError as exc:
                self._reached = True
                message = _error_body(exc)
                if exc.code not in RETRY_STATUSES:
                    raise _status_error(category, url, exc.code, message, params) from None
                last = f"HTTP {exc.code}" + (f" {message}" if message else "")
                # NCBI's 429 has no Retry-After: the backoff below (1 s, 2 s, ...) then applies
                wait = _retry_after(exc.headers) if exc.code == 429 else None
            except TransientAnswer as exc:
                last = str(exc)
            except BadResponse as exc:
                last = f"damaged response: {exc}"
                damaged = True
            except (
                TimeoutError,
                ConnectionError,
                http.client.HTTPException,
                urllib.error.URLError,
            ) as exc:
                if _offline_cause(exc) and not self._reached:
                    host = urllib.parse.urlsplit(url).netloc
                    raise OfflineError(
                        f"cannot reach {host} ({getattr(exc, 'reason', exc)}): no network "
                        f"connection to NCBI. {OFFLINE_HINT}"
                    ) from None
                last = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            self.stats.retries[category] += 1
            if attempt + 1 == self.retry.tries:
                break
            delay = self.retry.delay(attempt) if wait is None else min(wait, self.retry.max_delay_s)
            log.info("%s failed (%s); retry %d in %.1fs", category, last, attempt + 1, delay)
            self._sleep(delay)
        error = DamagedResponseError if damaged else FetchError
        raise error(
            f"{category}: giving up on {url} after {self.retry.tries} tries (last: {last}). "
            "Completed requests are cached: re-run to resume."
        )

    def _send(
        self, category: str, url: str, params: dict[str, str], method: str, max_bytes: int | None
    ) -> tuple[bytes, Message]:
        encoded = urllib.parse.urlencode(params)
        headers = {"User-Agent": self.user_agent}
        if method == "POST":
            req = urllib.request.Request(url, data=encoded.encode(), headers=headers)
        else:
            full = f"{url}?{encoded}" if encoded else url
            req = urllib.request.Request(full, headers=headers)
        self.limiter.wait()
        self.stats.requests[category] += 1
        with urllib.request.urlopen(req, timeout=self.retry.timeout_s) as response:
            self._reached = True
            if max_bytes is None:
                return response.read(), response.headers
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                raise Rejected(f"too large: {int(length)} bytes > {max_bytes}")
            body = response.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise Rejected(f"too large: over {max_bytes} bytes")
            return body, response.headers


def _status_error(
    category: str, url: str, status: int, message: str, params: Mapping[str, str]
) -> StatusError:
    """A non-retryable HTTP status as one line; NCBI's "API key invalid" names the key."""
    if status == 400 and "api key" in message.lower() and params.get("api_key"):
        return StatusError(
            f"NCBI rejected NCBI_API_KEY ({message}): check the key under Account settings at "
            "https://account.ncbi.nlm.nih.gov/settings/ or unset NCBI_API_KEY to run at 3 "
            "requests/s without one",
            status,
        )
    detail = f" ({message})" if message else ""
    return StatusError(f"{category}: HTTP {status} from {url}{detail}", status)
