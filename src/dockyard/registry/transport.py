"""HTTP plumbing for the registry client: connection pools, retry timing and URL joining.

urllib3 is imported inside the functions that need it, so that importing this module
costs the CLI nothing. The retry and URL helpers are pure functions.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlencode, urljoin, urlsplit

if TYPE_CHECKING:
    from urllib3 import BaseHTTPResponse
    from urllib3.connectionpool import HTTPConnectionPool

log = logging.getLogger(__name__)

# Statuses worth retrying: rate limiting and server-side failures that may pass.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = 60.0  # seconds without a byte arriving
POOL_SIZE = 8  # connections kept per endpoint; parallel layer downloads share them


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a request that failed in a way that may pass.

    ``attempts`` counts every try, the first included. The delay before retry ``n``
    (1-based) is ``base_delay * 2 ** (n - 1)``, capped at ``max_delay``. A server's
    ``Retry-After`` replaces that delay, capped at ``max_retry_after``.
    """

    attempts: int = 5
    base_delay: float = 0.5  # seconds
    max_delay: float = 8.0  # seconds
    max_retry_after: float = 60.0  # seconds

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Return the seconds to wait before retry number ``retry`` (1 for the first retry)."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after))
        return min(self.max_delay, self.base_delay * 2 ** max(retry - 1, 0))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Return the delay in seconds that a ``Retry-After`` header requests, or None if it is absent or invalid.

    The header contains either a number of seconds or an HTTP date. ``now`` is the
    Unix time to measure a date against (default: the current time).
    """
    import email.utils

    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def resolve_location(base_url: str, location: str) -> str:
    """Return the absolute URL of a ``Location`` header, which may be relative to ``base_url``."""
    return urljoin(base_url, location.strip())


def add_query(url: str, params: Mapping[str, str]) -> str:
    """Append ``params`` to ``url``'s query, with ``&`` when it already has one and ``?`` otherwise."""
    if not params:
        return url
    encoded = urlencode(list(params.items()))
    base, _, fragment = url.partition("#")
    if urlsplit(base).query:
        joined = base + ("" if base.endswith("&") else "&") + encoded
    elif base.endswith("?"):
        joined = base + encoded
    else:
        joined = base + "?" + encoded
    return joined + ("#" + fragment if fragment else "")


def origin(url: str) -> tuple[str, str]:
    """Return the scheme and ``host[:port]`` of a URL, lower case, with the default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    if ":" in host:
        host = f"[{host}]"
    return scheme, f"{host}:{port}"


def same_origin(first: str, second: str) -> bool:
    """Tell whether two URLs have the same scheme, host and port, so credentials may go to both."""
    return origin(first) == origin(second)


class Transport:
    """Connection pools, one per scheme, host, port and TLS setting, reused across requests."""

    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT, read_timeout: float = READ_TIMEOUT) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pools: dict[tuple[str, str, bool], HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def _pool(self, url: str, verify_tls: bool) -> HTTPConnectionPool:
        scheme, host = origin(url)
        key = (scheme, host, verify_tls)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                import urllib3

                options: dict[str, Any] = {
                    "maxsize": POOL_SIZE,
                    "block": False,
                    "retries": False,
                    "timeout": urllib3.Timeout(connect=self._connect_timeout, read=self._read_timeout),
                }
                if scheme == "https" and not verify_tls:
                    options["cert_reqs"] = "CERT_NONE"
                    options["assert_hostname"] = False
                pool = urllib3.connection_from_url(f"{scheme}://{host}", **options)
                self._pools[key] = pool
        return pool

    def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Any = None,
        verify_tls: bool = True,
    ) -> BaseHTTPResponse:
        """Send one request and return the response with its body unread.

        Follows no redirect and retries nothing. Raises urllib3's exceptions when the
        connection fails; the caller must read or drain the body and release it.
        """
        pool = self._pool(url, verify_tls)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        log.debug("%s %s", method, _redact(url))
        return pool.urlopen(
            method,
            target,
            body=body,
            headers=dict(headers),
            retries=False,
            redirect=False,
            preload_content=False,
            assert_same_host=False,
            release_conn=False,
        )

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def _redact(url: str) -> str:
    """Drop the query from a URL for logging, because signed redirect URLs carry credentials there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + ("?…" if parts.query else "")


def release(response: BaseHTTPResponse, limit: int = 1 << 16) -> bytes:
    """Read up to ``limit`` bytes of a response body (for error messages), then release the connection."""
    import urllib3

    try:
        data = response.read(limit, decode_content=True) or b""
        response.drain_conn()
        return data
    except (urllib3.exceptions.HTTPError, OSError):
        # The body only feeds an error message, so a broken one is dropped.
        response.close()
        return b""
    finally:
        response.release_conn()
