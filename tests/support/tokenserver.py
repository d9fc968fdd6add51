"""A token server on loopback for registries configured with ``auth: token:``.

It implements the server side of Docker's token authentication: ``GET /token`` with
``service`` and ``scope`` parameters and optional Basic credentials, and ``POST /token``
with an OAuth2 form (``password`` or ``refresh_token`` grant). Tokens are JWTs signed
with RS256 by a key whose self-signed certificate is the registry's ``rootcertbundle``;
the certificate travels in the JWT header's ``x5c``. Authenticated users get every action
they ask for; anonymous requests get a token with no access, as Docker Hub gives for a
private repository. Every request is recorded so tests can count them.
"""

from __future__ import annotations

import base64
import datetime
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.registry import Registry, start_registry

SERVICE = "dockyard-test-registry"
ISSUER = "dockyard-test-issuer"
USERS = {"alice": "wonderland"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenRequestRecord:
    method: str
    user: str | None  # the authenticated user, None when anonymous or rejected
    scopes: list[str]
    status: int
    grant_type: str | None = None


@dataclass
class TokenServer:
    """A running token server; ``stop()`` shuts it down."""

    workdir: Path
    users: dict[str, str]
    expires_in: int | None = 300  # None leaves expires_in out of the response
    requests: list[TokenRequestRecord] = field(default_factory=list)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # refresh token -> user

    def __post_init__(self) -> None:
        self._make_key()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-server", daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/token"

    def auth_config(self) -> dict:
        """Return the registry's ``auth`` config section that trusts this server."""
        return {
            "token": {
                "realm": self.realm,
                "service": SERVICE,
                "issuer": ISSUER,
                "rootcertbundle": str(self.certificate_path),
            }
        }

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        """Forget the recorded requests."""
        self.requests.clear()

    def _make_key(self) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard test token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._certificate_der = certificate.public_bytes(serialization.Encoding.DER)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.certificate_path = self.workdir / "token-signer.pem"
        self.certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    def sign(self, subject: str, access: list[dict], service: str = SERVICE) -> str:
        """Return a JWT the registry accepts, granting ``access``."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._certificate_der).decode()]}
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": service,
            "exp": now + (self.expires_in or 60),
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        signature = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def _grant(self, user: str | None, scopes: list[str]) -> list[dict]:
        if user is None:
            return []
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind == "repository" and name:
                access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        return access

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                pass

            def _reply(self, status: int, document: dict) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _issue(self, user: str | None, scopes: list[str], service: str, oauth: bool) -> dict:
                token = server.sign(user or "", server._grant(user, scopes), service)
                document: dict = {"access_token": token} if oauth else {"token": token}
                if server.expires_in is not None:
                    document["expires_in"] = server.expires_in
                return document

            def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's naming
                query = parse_qs(urlsplit(self.path).query)
                scopes = query.get("scope", [])
                service = query.get("service", [SERVICE])[0]
                user: str | None = None
                header = self.headers.get("Authorization")
                if header:
                    scheme, _, encoded = header.partition(" ")
                    try:
                        name, _, password = base64.b64decode(encoded).decode().partition(":")
                    except ValueError:
                        name, password = "", ""
                    if scheme.lower() != "basic" or server.users.get(name) != password or not name:
                        server.requests.append(TokenRequestRecord("GET", None, scopes, 401))
                        self._reply(401, {"details": "invalid user name or password"})
                        return
                    user = name
                server.requests.append(TokenRequestRecord("GET", user, scopes, 200))
                self._reply(200, self._issue(user, scopes, service, oauth=False))

            def do_POST(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's naming
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                grant = form.get("grant_type", [""])[0]
                scopes = form.get("scope", [])
                service = form.get("service", [SERVICE])[0]
                user: str | None = None
                if grant == "password":
                    name = form.get("username", [""])[0]
                    if name and server.users.get(name) == form.get("password", [None])[0]:
                        user = name
                elif grant == "refresh_token":
                    user = server.refresh_tokens.get(form.get("refresh_token", [""])[0])
                if user is None:
                    server.requests.append(TokenRequestRecord("POST", None, scopes, 401, grant))
                    self._reply(401, {"details": "invalid grant"})
                    return
                server.requests.append(TokenRequestRecord("POST", user, scopes, 200, grant))
                self._reply(200, self._issue(user, scopes, service, oauth=True))

        return Handler


@dataclass
class TokenRegistry:
    """A registry that trusts a token server, and that token server."""

    registry: Registry
    tokens: TokenServer

    @property
    def host(self) -> str:
        return self.registry.host


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """A registry with token authentication; the token server accepts ``alice``/``wonderland``."""
    workdir = tmp_path_factory.mktemp("token-registry")
    tokens = TokenServer(workdir / "tokens", dict(USERS))
    try:
        running = start_registry(workdir / "registry", auth=tokens.auth_config())
    except BaseException:
        tokens.stop()
        raise
    try:
        yield TokenRegistry(running, tokens)
    finally:
        running.stop()
        tokens.stop()
