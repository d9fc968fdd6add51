"""Registry protocol logic without sockets: challenges, scopes, tokens, URLs, retry timing, endpoints, credentials."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dockyard.config import Config, RegistryConfig
from dockyard.errors import InvalidArgument, RegistryError, Unauthorized
from dockyard.registry import auth
from dockyard.registry.auth import Authenticator, Challenge, Login, TokenRequest
from dockyard.registry.client import _content_range_start
from dockyard.registry.credentials import Credentials
from dockyard.registry.endpoints import normalize_server, pull_endpoints, push_endpoints
from dockyard.registry.transport import RetryPolicy, add_query, parse_retry_after, resolve_location, same_origin

# -- WWW-Authenticate -----------------------------------------------------------------


def test_parse_bearer_with_comma_in_quoted_scope() -> None:
    header = 'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"'

    challenges = auth.parse_www_authenticate(header)

    assert challenges == [
        Challenge("bearer", {
            "realm": "https://auth.example/token",
            "service": "registry.example",
            "scope": "repository:a/b:pull,push",
        })
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        ("BASIC Realm=x", [Challenge("basic", {"realm": "x"})]),
        (
            'Basic realm="a", Bearer realm="b",service=c',
            [Challenge("basic", {"realm": "a"}), Challenge("bearer", {"realm": "b", "service": "c"})],
        ),
        ('Bearer realm="say \\"hi\\""', [Challenge("bearer", {"realm": 'say "hi"'})]),
        ("Negotiate, Basic realm=r", [Challenge("negotiate", {}), Challenge("basic", {"realm": "r"})]),
        ("Negotiate dGVzdA==", [Challenge("negotiate", {"": "dGVzdA=="})]),
        ('Bearer error="insufficient_scope" , realm=r', [Challenge("bearer", {"error": "insufficient_scope", "realm": "r"})]),
        ("", []),
        ('Bearer realm="unterminated', [Challenge("bearer", {"realm": "unterminated"})]),
    ],
)
def test_parse_www_authenticate_cases(header: str, expected: list[Challenge]) -> None:
    assert auth.parse_www_authenticate(header) == expected


def test_parse_several_header_values() -> None:
    challenges = auth.parse_www_authenticate(['Basic realm="a"', 'Bearer realm="b"'])

    assert [c.scheme for c in challenges] == ["basic", "bearer"]


@given(st.text(max_size=80))
def test_parse_www_authenticate_never_raises(header: str) -> None:
    for challenge in auth.parse_www_authenticate(header):
        assert challenge.scheme == challenge.scheme.lower()


# -- scopes and token requests --------------------------------------------------------


def test_scope_strings() -> None:
    assert auth.pull_scopes("library/busybox") == ("repository:library/busybox:pull",)
    assert auth.push_scopes("me/app") == ("repository:me/app:pull,push",)
    assert auth.push_scopes("me/app", mount_from="library/busybox") == (
        "repository:me/app:pull,push",
        "repository:library/busybox:pull",
    )
    assert auth.push_scopes("me/app", mount_from="me/app") == ("repository:me/app:pull,push",)


@pytest.mark.parametrize(
    ("scopes", "extra", "expected"),
    [
        (["repository:a:pull,push"], ["repository:a:push,pull"], ["repository:a:pull,push"]),
        (["repository:a:pull"], ["repository:a:push"], ["repository:a:pull,push"]),
        (["repository:a:pull"], ["registry:catalog:*"], ["repository:a:pull", "registry:catalog:*"]),
        (["repository:a:pull"], ["", "repository:b:pull"], ["repository:a:pull", "repository:b:pull"]),
        ([], [], []),
    ],
)
def test_merge_scopes(scopes: list[str], extra: list[str], expected: list[str]) -> None:
    assert auth.merge_scopes(scopes, extra) == expected


def test_token_request_get_with_basic_and_several_scopes() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg"})

    request = auth.build_token_request(challenge, ["repository:a:pull,push", "repository:b:pull"], Login("u", "p"))

    query = parse_qs(urlsplit(request.url).query)
    assert request.method == "GET"
    assert query["service"] == ["reg"]
    assert query["scope"] == ["repository:a:pull,push", "repository:b:pull"]
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


def test_token_request_keeps_realm_query() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example/token?tenant=x", "service": "reg"})

    request = auth.build_token_request(challenge, ["repository:a:pull"], None)

    assert request.url.startswith("https://auth.example/token?tenant=x&service=reg&scope=")
    assert "Authorization" not in request.headers


def test_token_request_identity_token_is_refresh_grant() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example/token", "service": "reg"})

    request = auth.build_token_request(challenge, ["repository:a:pull"], Login(auth.IDENTITY_TOKEN_USER, "refresh"))

    form = parse_qs((request.body or b"").decode())
    assert request.method == "POST"
    assert form["grant_type"] == ["refresh_token"]
    assert form["refresh_token"] == ["refresh"]
    assert form["scope"] == ["repository:a:pull"]
    assert "Authorization" not in request.headers


def test_token_request_rejects_realm_without_http_scheme() -> None:
    with pytest.raises(RegistryError):
        auth.build_token_request(Challenge("bearer", {"realm": "file:///etc/passwd"}), [], None)


@pytest.mark.parametrize(
    ("document", "token", "expires_at"),
    [
        ({"token": "t1", "expires_in": 300}, "t1", 1300.0),
        ({"access_token": "t2"}, "t2", 1060.0),
        ({"token": "t3", "access_token": "ignored", "expires_in": 0}, "t3", 1060.0),
    ],
)
def test_parse_token_response(document: dict, token: str, expires_at: float) -> None:
    parsed = auth.parse_token_response(json.dumps(document).encode(), now=1000.0)

    assert parsed.value == token
    assert parsed.expires_at == expires_at


def test_parse_token_response_without_token() -> None:
    with pytest.raises(RegistryError):
        auth.parse_token_response(b'{"expires_in": 60}', now=0)


# -- Authenticator with a token server made of bytes ------------------------------------


class FakeTokenServer:
    """Returns canned token responses and records the requests."""

    def __init__(self, status: int = 200, expires_in: int = 60) -> None:
        self.status = status
        self.expires_in = expires_in
        self.requests: list[TokenRequest] = []

    def __call__(self, request: TokenRequest) -> tuple[int, bytes]:
        self.requests.append(request)
        if self.status != 200:
            return self.status, b'{"details": "no"}'
        return 200, json.dumps({"token": f"token-{len(self.requests)}", "expires_in": self.expires_in}).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


BEARER = ['Bearer realm="https://auth.example/token",service="reg"']
SCOPES = ("repository:a:pull",)


def make_authenticator(server: FakeTokenServer, clock: Clock, login: Login | None = Login("u", "p")) -> Authenticator:
    return Authenticator(lambda host: login, server, clock)


def test_authenticator_anonymous_until_challenged() -> None:
    authenticator = make_authenticator(FakeTokenServer(), Clock())

    assert authenticator.authorization("https://reg", "reg", SCOPES) is None


def test_authenticator_reuses_token_until_expiry() -> None:
    server, clock = FakeTokenServer(expires_in=100), Clock()
    authenticator = make_authenticator(server, clock)

    first = authenticator.respond_to_challenge("https://reg", "reg", BEARER, SCOPES)
    clock.now = 99.0
    reused = authenticator.authorization("https://reg", "reg", SCOPES)
    clock.now = 100.0
    renewed = authenticator.authorization("https://reg", "reg", SCOPES)

    assert first == "Bearer token-1"
    assert reused == "Bearer token-1"
    assert renewed == "Bearer token-2"
    assert len(server.requests) == 2


def test_authenticator_new_scope_gets_new_token() -> None:
    server = FakeTokenServer()
    authenticator = make_authenticator(server, Clock())
    authenticator.respond_to_challenge("https://reg", "reg", BEARER, SCOPES)

    other = authenticator.authorization("https://reg", "reg", ("repository:b:pull",))

    assert other == "Bearer token-2"
    assert "scope=repository%3Ab%3Apull" in server.requests[1].url


def test_authenticator_challenge_fetches_fresh_token() -> None:
    server = FakeTokenServer()
    authenticator = make_authenticator(server, Clock())
    authenticator.respond_to_challenge("https://reg", "reg", BEARER, SCOPES)

    again = authenticator.respond_to_challenge("https://reg", "reg", BEARER, SCOPES)

    assert again == "Bearer token-2"


def test_authenticator_adds_scope_from_challenge() -> None:
    server = FakeTokenServer()
    authenticator = make_authenticator(server, Clock())
    header = ['Bearer realm="https://auth.example/token",service="reg",scope="registry:catalog:*"']

    authenticator.respond_to_challenge("https://reg", "reg", header, SCOPES)

    assert parse_qs(urlsplit(server.requests[0].url).query)["scope"] == ["repository:a:pull", "registry:catalog:*"]


def test_authenticator_rejected_credentials() -> None:
    authenticator = make_authenticator(FakeTokenServer(status=401), Clock())

    with pytest.raises(Unauthorized) as raised:
        authenticator.respond_to_challenge("https://reg", "reg.example", BEARER, SCOPES, repository="reg.example/a")

    assert "reg.example/a" in str(raised.value)
    assert "dockyard login reg.example" in str(raised.value)


def test_authenticator_basic_challenge() -> None:
    authenticator = make_authenticator(FakeTokenServer(), Clock())

    header = authenticator.respond_to_challenge("https://reg", "reg", ['Basic realm="r"'], SCOPES)

    assert header == "Basic " + base64.b64encode(b"u:p").decode()


def test_authenticator_basic_without_credentials() -> None:
    authenticator = make_authenticator(FakeTokenServer(), Clock(), login=None)

    with pytest.raises(Unauthorized):
        authenticator.respond_to_challenge("https://reg", "reg", ['Basic realm="r"'], SCOPES)


def test_authenticator_unsupported_scheme() -> None:
    authenticator = make_authenticator(FakeTokenServer(), Clock())

    with pytest.raises(Unauthorized) as raised:
        authenticator.respond_to_challenge("https://reg", "reg", ["Negotiate"], SCOPES)

    assert "negotiate" in str(raised.value)


def test_error_detail_reads_registry_errors() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}},{"code":"DENIED"}]}'

    assert auth.error_detail(body) == "MANIFEST_UNKNOWN: manifest unknown; DENIED"
    assert auth.error_codes(body) == ["MANIFEST_UNKNOWN", "DENIED"]
    assert auth.error_detail(b"<html>oops</html>") == "<html>oops</html>"


# -- URLs, ranges and retry timing ----------------------------------------------------


@pytest.mark.parametrize(
    ("base", "location", "expected"),
    [
        ("http://r:5000/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/u1?_state=s", "http://r:5000/v2/a/blobs/uploads/u1?_state=s"),
        ("http://r:5000/v2/a/blobs/uploads/", "u1", "http://r:5000/v2/a/blobs/uploads/u1"),
        ("http://r:5000/v2/a/blobs/uploads/", "https://storage.example/up?x=1", "https://storage.example/up?x=1"),
    ],
)
def test_resolve_location(base: str, location: str, expected: str) -> None:
    assert resolve_location(base, location) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://r/v2/a/blobs/uploads/u1", "http://r/v2/a/blobs/uploads/u1?digest=sha256%3Aab"),
        ("http://r/v2/a/blobs/uploads/u1?_state=s", "http://r/v2/a/blobs/uploads/u1?_state=s&digest=sha256%3Aab"),
        ("http://r/u1?", "http://r/u1?digest=sha256%3Aab"),
        ("http://r/u1?a=1&", "http://r/u1?a=1&digest=sha256%3Aab"),
    ],
)
def test_add_query(url: str, expected: str) -> None:
    assert add_query(url, {"digest": "sha256:ab"}) == expected


def test_same_origin() -> None:
    assert same_origin("http://r:80/a", "http://r/b")
    assert same_origin("https://R.example/a", "https://r.example:443/b")
    assert not same_origin("http://r:5000/a", "http://r:5001/a")
    assert not same_origin("http://r/a", "https://r/a")
    assert not same_origin("https://r.example/a", "https://s3.example/a")


def test_content_range_start() -> None:
    assert _content_range_start("bytes 100-199/200") == 100
    assert _content_range_start("bytes */200") is None
    assert _content_range_start(None) is None


def test_backoff_doubles_up_to_cap() -> None:
    policy = RetryPolicy(attempts=6, base_delay=0.5, max_delay=3.0)

    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_honours_retry_after_with_cap() -> None:
    policy = RetryPolicy(max_retry_after=10.0)

    assert policy.delay(1, retry_after=4.0) == 4.0
    assert policy.delay(1, retry_after=500.0) == 10.0


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# -- endpoints ------------------------------------------------------------------------


def test_pull_endpoints_mirrors_first() -> None:
    config = Config(registries={"docker.io": RegistryConfig(mirrors=("http://127.0.0.1:5000", "mirror.example/"))})

    urls = [e.url for e in pull_endpoints(config, "docker.io")]

    assert urls == ["http://127.0.0.1:5000", "https://mirror.example", "https://registry-1.docker.io"]
    assert [e.url for e in push_endpoints(config, "docker.io")] == ["https://registry-1.docker.io"]


def test_loopback_is_plain_http() -> None:
    assert [e.url for e in pull_endpoints(Config(), "localhost:5000")] == ["http://localhost:5000"]
    assert [e.url for e in pull_endpoints(Config(), "[::1]:5000")] == ["http://[::1]:5000"]


def test_insecure_remote_tries_https_then_http() -> None:
    config = Config(registries={"reg.example:5000": RegistryConfig(insecure=True)})

    endpoints = push_endpoints(config, "reg.example:5000")

    assert [(e.url, e.verify_tls) for e in endpoints] == [
        ("https://reg.example:5000", False),
        ("http://reg.example:5000", True),
    ]


def test_mirror_with_path_is_rejected() -> None:
    config = Config(registries={"docker.io": RegistryConfig(mirrors=("https://m.example/prefix",))})

    with pytest.raises(InvalidArgument) as raised:
        pull_endpoints(config, "docker.io")

    assert "https://m.example/prefix" in str(raised.value)


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("https://index.docker.io/v1/", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://127.0.0.1:5000/v2/", "127.0.0.1:5000"),
        ("Reg.Example", "reg.example"),
    ],
)
def test_normalize_server(server: str, expected: str) -> None:
    assert normalize_server(server) == expected


# -- credentials in config.json -------------------------------------------------------


def test_credentials_match_url_keys(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"hub-user:hub-pass").decode()
    (tmp_path / "config.json").write_text(json.dumps({
        "auths": {
            "https://index.docker.io/v1/": {"auth": encoded},
            "http://reg.example:5000": {"auth": base64.b64encode(b"u:p:with:colons").decode()},
        }
    }))

    credentials = Credentials.load(tmp_path)

    assert credentials.get("docker.io") == ("hub-user", "hub-pass")
    assert credentials.get("reg.example:5000") == ("u", "p:with:colons")
    assert credentials.get("other.example") is None


def test_credentials_store_and_erase(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}, "psFormat": "table"}))
    credentials = Credentials.load(tmp_path)

    credentials.store("docker.io", "me", "secret")
    stored = json.loads((tmp_path / "config.json").read_text())
    reloaded = Credentials.load(tmp_path)
    erased = reloaded.erase("index.docker.io")
    after = json.loads((tmp_path / "config.json").read_text())

    assert base64.b64decode(stored["auths"]["https://index.docker.io/v1/"]["auth"]) == b"me:secret"
    assert stored["psFormat"] == "table"
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600
    assert erased
    assert after["auths"] == {}
    assert not Credentials.load(tmp_path).erase("docker.io")


def test_credentials_helper_selection(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "credsStore": "desktop",
        "credHelpers": {"reg.example": "pass"},
    }))
    credentials = Credentials.load(tmp_path)

    assert credentials.helper_for("reg.example") == "pass"
    assert credentials.helper_for("https://reg.example/v2/") == "pass"
    assert credentials.helper_for("docker.io") == "desktop"


def test_credentials_missing_helper_names_it(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "no-such-helper-xyz"}))

    with pytest.raises(RegistryError) as raised:
        Credentials.load(tmp_path).get("reg.example")

    assert "docker-credential-no-such-helper-xyz" in str(raised.value)
    assert "reg.example" in str(raised.value)


def test_credentials_invalid_json_names_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")

    with pytest.raises(InvalidArgument) as raised:
        Credentials.load(tmp_path)

    assert str(tmp_path / "config.json") in str(raised.value)
