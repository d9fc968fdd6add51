"""Registry authentication: anonymous, Basic, and Bearer tokens from a token server.

A registry that requires credentials responds 401 with ``WWW-Authenticate``. For
``Basic`` the client sends the user's credentials on every request. For ``Bearer`` it
requests a token from the token server named by ``realm``, for ``service`` and one or
more scopes (``repository:NAME:pull`` or ``repository:NAME:pull,push``). It sends Basic
credentials to the token server when it has some, and then sends ``Authorization:
Bearer TOKEN`` to the registry. The protocol is Docker's
token authentication specification (distribution's ``docs/spec/auth/token.md``).

The parsing and request building here touch no socket. ``Authenticator`` does the
bookkeeping (challenges per endpoint, a token cache) and fetches tokens through a
function it is given, so tests can hand it bytes instead of a server.
No credential or token is ever logged.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence
from urllib.parse import urlencode, urlsplit

from dockyard.errors import RegistryError, Unauthorized

log = logging.getLogger(__name__)

# The lifetime of a token whose response has no expires_in, as the token specification defines it.
DEFAULT_TOKEN_LIFETIME = 60.0
# A user name that marks the secret as an identity (OAuth2 refresh) token, as Docker's credential helpers do.
IDENTITY_TOKEN_USER = "<token>"
CLIENT_ID = "dockyard"

_SEPARATORS = set('()<>@,;:\\"/[]?={} \t')


@dataclass(frozen=True)
class Challenge:
    """One challenge from a ``WWW-Authenticate`` header."""

    scheme: str  # lower case: "basic", "bearer"
    params: Mapping[str, str] = field(default_factory=dict)  # names in lower case


@dataclass(frozen=True)
class Token:
    value: str
    expires_at: float  # on the Authenticator's clock


class Login(NamedTuple):
    """Credentials for one server: a user and password, or an identity token."""

    user: str
    secret: str

    @property
    def is_identity_token(self) -> bool:
        return self.user == IDENTITY_TOKEN_USER


def _is_token_char(char: str) -> bool:
    return 32 < ord(char) < 127 and char not in _SEPARATORS


def parse_www_authenticate(headers: str | Iterable[str]) -> list[Challenge]:
    """Parse one or more ``WWW-Authenticate`` values into challenges, in order.

    The syntax is RFC 9110 section 11.6.1. A value may contain several challenges
    separated by commas. Parameter values may be quoted strings with backslash escapes
    and commas inside. A scheme may carry a token68 instead of parameters, which is kept
    under the key ``""``. Malformed parts are skipped rather than raised, because a registry's header
    is not the user's input and the caller decides what to do without a usable challenge.
    """
    values = [headers] if isinstance(headers, str) else list(headers)
    challenges: list[Challenge] = []
    for value in values:
        challenges.extend(_parse_one_header(value))
    return challenges


def _parse_one_header(text: str) -> list[Challenge]:
    challenges: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    pos = 0
    length = len(text)

    def skip(chars: str) -> None:
        nonlocal pos
        while pos < length and text[pos] in chars:
            pos += 1

    def read_token() -> str:
        nonlocal pos
        start = pos
        while pos < length and _is_token_char(text[pos]):
            pos += 1
        return text[start:pos]

    while pos < length:
        skip(" \t,")
        if pos >= length:
            break
        name = read_token()
        if not name:
            pos += 1  # a stray separator: skip it
            continue
        skip(" \t")
        if pos < length and text[pos] == "=" and scheme is not None:
            pos += 1
            skip(" \t")
            params[name.lower()], pos = _read_value(text, pos)
            continue
        # A token not followed by "=" starts a new challenge.
        if scheme is not None:
            challenges.append(Challenge(scheme, params))
        scheme, params = name.lower(), {}
        # A token68 (base64-like, may end in "=") directly after the scheme.
        start = pos
        while pos < length and (text[pos].isalnum() or text[pos] in "-._~+/"):
            pos += 1
        if pos > start:
            lookahead = pos
            while lookahead < length and text[lookahead] == "=":
                lookahead += 1
            rest = text[lookahead:].lstrip(" \t")
            if not rest or rest.startswith(","):
                params[""] = text[start:lookahead]
                pos = lookahead
            else:
                pos = start  # it was a parameter name; read it on the next turn
    if scheme is not None:
        challenges.append(Challenge(scheme, params))
    return challenges


def _read_value(text: str, pos: int) -> tuple[str, int]:
    """Read a token or quoted-string value starting at ``pos``; return it and the position after it."""
    length = len(text)
    if pos < length and text[pos] == '"':
        pos += 1
        chars = []
        while pos < length and text[pos] != '"':
            if text[pos] == "\\" and pos + 1 < length:
                pos += 1
            chars.append(text[pos])
            pos += 1
        # Past the closing quote, or at the end of an unterminated string.
        return "".join(chars), min(pos + 1, length)
    start = pos
    while pos < length and text[pos] not in ", \t":
        pos += 1
    return text[start:pos], pos


def repository_scope(path: str, actions: Sequence[str]) -> str:
    """Return a token scope such as ``repository:library/busybox:pull,push``."""
    return f"repository:{path}:{','.join(actions)}"


def pull_scopes(path: str) -> tuple[str, ...]:
    return (repository_scope(path, ("pull",)),)


def push_scopes(path: str, mount_from: str | None = None) -> tuple[str, ...]:
    """Return the scopes to push to ``path``, plus pull access to ``mount_from`` for a cross-repository mount."""
    scopes = [repository_scope(path, ("pull", "push"))]
    if mount_from is not None and mount_from != path:
        scopes.append(repository_scope(mount_from, ("pull",)))
    return tuple(scopes)


def merge_scopes(scopes: Sequence[str], extra: Iterable[str]) -> list[str]:
    """Add ``extra`` scopes to ``scopes``, merging the actions of scopes for the same resource.

    Registries list actions in any order (distribution 2.8 sends ``push,pull`` or
    ``pull,push`` at random), so ``repository:a:push,pull`` adds nothing to
    ``repository:a:pull,push``.
    """
    merged: list[str] = []
    actions_by_resource: dict[str, list[str]] = {}
    for scope in [*scopes, *extra]:
        if not scope:
            continue
        resource, colon, actions = scope.rpartition(":")
        if not colon or not resource:
            if scope not in merged:
                merged.append(scope)
            continue
        known = actions_by_resource.get(resource)
        if known is None:
            actions_by_resource[resource] = known = []
            merged.append(resource)
        known.extend(a for a in actions.split(",") if a and a not in known)
    return [f"{item}:{','.join(actions_by_resource[item])}" if item in actions_by_resource else item for item in merged]


def basic_authorization(user: str, secret: str) -> str:
    """Return the value of an ``Authorization: Basic`` header."""
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")


@dataclass(frozen=True)
class TokenRequest:
    """An HTTP request to a token server, ready to send."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None = None


def build_token_request(challenge: Challenge, scopes: Sequence[str], login: Login | None) -> TokenRequest:
    """Build the request for a Bearer token that satisfies ``challenge``.

    A user and password go as Basic credentials on a GET; an identity token goes as an
    OAuth2 ``refresh_token`` grant in a POST form. Several scopes become several
    ``scope`` parameters. Raises RegistryError when the challenge has no usable realm.
    """
    realm = challenge.params.get("realm", "")
    if urlsplit(realm).scheme not in ("http", "https"):
        raise RegistryError(f"registry sent a Bearer challenge with an invalid realm {realm!r}")
    fields: list[tuple[str, str]] = []
    service = challenge.params.get("service")
    if service:
        fields.append(("service", service))
    fields.extend(("scope", scope) for scope in scopes)

    if login is not None and login.is_identity_token:
        form = [("grant_type", "refresh_token"), ("refresh_token", login.secret), ("client_id", CLIENT_ID)]
        form += fields
        return TokenRequest(
            "POST",
            realm,
            {"Content-Type": "application/x-www-form-urlencoded"},
            urlencode(form).encode("ascii"),
        )

    separator = "&" if urlsplit(realm).query else "?"
    url = realm + (separator + urlencode(fields) if fields else "")
    headers = {}
    if login is not None:
        headers["Authorization"] = basic_authorization(login.user, login.secret)
    return TokenRequest("GET", url, headers)


def parse_token_response(body: bytes, now: float) -> Token:
    """Read the token (``token`` or ``access_token``) and its lifetime from a token server's JSON body."""
    import json

    try:
        document = json.loads(body)
    except ValueError as error:
        raise RegistryError(f"token server returned invalid JSON: {error}") from error
    if not isinstance(document, dict):
        raise RegistryError("token server returned JSON that is not an object")
    value = document.get("token") or document.get("access_token")
    if not isinstance(value, str) or not value:
        raise RegistryError("token server response has neither token nor access_token")
    lifetime = document.get("expires_in")
    if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    return Token(value, now + float(lifetime))


def unauthorized_message(registry: str, repository: str | None, detail: str) -> str:
    """Return the text of an Unauthorized error: what was denied, why, and what to do."""
    target = f"repository {repository} on registry {registry}" if repository else f"registry {registry}"
    return f"access to {target} was denied: {detail}. Log in with `dockyard login {registry}` and try again"


# fetch(request) -> (HTTP status, body). It raises RegistryUnreachable when the server is unreachable.
TokenFetcher = Callable[[TokenRequest], tuple[int, bytes]]
# lookup(server) -> credentials for that server, or None.
LoginLookup = Callable[[str], "Login | None"]


class Authenticator:
    """Builds ``Authorization`` headers for registry endpoints and caches tokens.

    The first request to an endpoint goes out anonymously. Its 401 teaches the
    authenticator the endpoint's challenge, and later requests carry credentials from
    the start. Tokens are kept per realm, service, scope set and user until they expire.
    """

    def __init__(
        self,
        lookup: LoginLookup,
        fetch: TokenFetcher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._fetch = fetch
        self._clock = clock
        self._challenges: dict[str, Challenge] = {}  # by endpoint URL
        self._tokens: dict[tuple, Token] = {}
        self.tokens_fetched = 0

    def authorization(self, endpoint: str, server: str, scopes: Sequence[str], repository: str | None = None) -> str | None:
        """Return the header value for a request to ``endpoint``, or None to go anonymously.

        ``server`` keys the credentials; ``repository`` only names the target in errors.
        """
        challenge = self._challenges.get(endpoint)
        if challenge is None:
            return None
        return self._header_for(challenge, server, scopes, repository, fresh=False)

    def respond_to_challenge(
        self,
        endpoint: str,
        server: str,
        headers: Iterable[str],
        scopes: Sequence[str],
        repository: str | None = None,
    ) -> str:
        """Handle a 401 from ``endpoint``: remember its challenge and return a header with fresh credentials.

        Raises Unauthorized when no credentials can satisfy the challenge: no supported
        scheme, Basic without credentials, or a token server that rejects them.
        """
        challenges = parse_www_authenticate(headers)
        chosen = next((c for c in challenges if c.scheme == "bearer"), None)
        if chosen is None:
            chosen = next((c for c in challenges if c.scheme == "basic"), None)
        if chosen is None:
            offered = ", ".join(c.scheme for c in challenges) or "none"
            raise Unauthorized(
                unauthorized_message(server, repository, f"no supported authentication scheme offered ({offered})")
            )
        self._challenges[endpoint] = chosen
        return self._header_for(chosen, server, scopes, repository, fresh=True)

    def _header_for(
        self, challenge: Challenge, server: str, scopes: Sequence[str], repository: str | None, fresh: bool
    ) -> str:
        login = self._lookup(server)
        if challenge.scheme == "basic":
            if login is None or login.is_identity_token:
                raise Unauthorized(unauthorized_message(server, repository, "the registry requires credentials"))
            return basic_authorization(login.user, login.secret)

        # The registry may name the scopes it requires (with error="insufficient_scope"), so request them too.
        wanted = merge_scopes(scopes, (challenge.params.get("scope") or "").split(" "))
        key = (
            challenge.params.get("realm"),
            challenge.params.get("service"),
            tuple(sorted(wanted)),
            login.user if login else None,
        )
        now = self._clock()
        cached = self._tokens.get(key)
        if cached is not None and not fresh and now < cached.expires_at:
            return "Bearer " + cached.value

        request = build_token_request(challenge, wanted, login)
        log.debug("requesting a token from %s for scopes %s (%s)", challenge.params.get("realm"),
                  " ".join(wanted) or "none", "with credentials" if login else "anonymous")
        status, body = self._fetch(request)
        self.tokens_fetched += 1
        if status in (401, 403):
            detail = "the token server rejected the credentials" if login else "the registry requires credentials"
            raise Unauthorized(unauthorized_message(server, repository, detail))
        if status != 200:
            raise RegistryError(
                f"token request to {challenge.params.get('realm')} for {server} failed with HTTP {status}: "
                f"{error_detail(body) or 'no detail'}"
            )
        token = parse_token_response(body, now)
        self._tokens[key] = token
        return "Bearer " + token.value


def error_detail(body: bytes) -> str:
    """Summarise a registry's JSON error body (``errors[].code`` and ``message``), or its start as text."""
    import json

    try:
        document = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip()
    parts: list[str] = []
    if isinstance(document, dict):
        errors = document.get("errors")
        if isinstance(errors, list):
            for item in errors:
                if isinstance(item, dict):
                    code = item.get("code", "")
                    message = item.get("message", "")
                    parts.append(f"{code}: {message}" if code and message else str(code or message))
        elif isinstance(document.get("details"), str):  # some token servers use this shape
            parts.append(document["details"])
        elif isinstance(document.get("message"), str):
            parts.append(document["message"])
    return "; ".join(p for p in parts if p)


def error_codes(body: bytes) -> list[str]:
    """Return the ``errors[].code`` values of a registry's JSON error body."""
    import json

    try:
        document = json.loads(body)
    except ValueError:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("errors"), list):
        return []
    return [str(item.get("code")) for item in document["errors"] if isinstance(item, dict) and item.get("code")]
