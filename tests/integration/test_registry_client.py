"""RegistryClient against real registries on loopback (Debian's docker-registry).

Content is made by hand in each test: random blobs and a small OCI manifest that
references them. Repositories get unique names so the session registry can be shared.
"""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dockyard.config import Config, RegistryConfig
from dockyard.errors import DigestMismatch, ManifestUnknown, RegistryError, RegistryUnreachable, Unauthorized
from dockyard.image import mediatypes, reference
from dockyard.image.manifest import Descriptor
from dockyard.image.store import ContentStore
from dockyard.registry import login, logout
from dockyard.registry.client import RegistryClient, compute_digest
from dockyard.registry.credentials import Credentials
from dockyard.registry.transport import RetryPolicy
from tests.support.proxy import BlobServer, Proxy
from tests.support.registry import Registry, free_port, start_registry
from tests.support.tokenserver import TokenRegistry

pytestmark = pytest.mark.integration

FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture(autouse=True)
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Docker config directory, so no test reads the real ~/.docker."""
    directory = tmp_path / "docker-config"
    directory.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return directory


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "root")


def make_client(tmp_path: Path, credentials: Credentials | None = None, **registries: RegistryConfig) -> RegistryClient:
    config = Config(root=tmp_path / "root", registries=dict(registries))
    return RegistryClient(config, credentials, retry=FAST_RETRY, sleep=lambda seconds: None)


def write_auths(directory: Path, host: str, user: str, password: str) -> Credentials:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": encoded}}}))
    return Credentials.load(directory)


def blob_descriptor(data: bytes, media_type: str = mediatypes.OCI_LAYER_GZIP) -> Descriptor:
    return Descriptor(media_type=media_type, digest=compute_digest(data), size=len(data))


def upload(client: RegistryClient, repository: reference.Reference, data: bytes) -> Descriptor:
    descriptor = blob_descriptor(data)
    client.upload_blob(repository, descriptor, lambda: io.BytesIO(data))
    return descriptor


def push_image(client: RegistryClient, ref: reference.Reference, layer: bytes) -> tuple[bytes, str]:
    """Push a config, one layer and an OCI manifest under ``ref``; return the manifest bytes and digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config_descriptor = upload(client, ref, config)
    layer_descriptor = upload(client, ref, layer)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_MANIFEST,
        "config": {"mediaType": mediatypes.OCI_CONFIG, "digest": config_descriptor.digest, "size": config_descriptor.size},
        "layers": [{"mediaType": mediatypes.OCI_LAYER_GZIP, "digest": layer_descriptor.digest, "size": layer_descriptor.size}],
    }).encode()
    digest = client.put_manifest(ref, manifest, mediatypes.OCI_MANIFEST)
    return manifest, digest


def unique(name: str) -> str:
    return f"{name}-{os.urandom(4).hex()}"


def fetch(client: RegistryClient, store: ContentStore, ref: reference.Reference, descriptor: Descriptor) -> bytes:
    with store.ingest(descriptor.digest, descriptor.size) as ingest:
        client.fetch_blob(ref, descriptor, ingest)
    return store.read(descriptor.digest)


def blob_file(registry: Registry, digest: str) -> Path:
    hex_digest = digest.split(":", 1)[1]
    return registry.storage / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"


# -- anonymous registry ---------------------------------------------------------------


def test_push_and_pull_blob_and_manifest(registry: Registry, tmp_path: Path, store: ContentStore) -> None:
    client = make_client(tmp_path)
    ref = reference.parse(f"{registry.host}/{unique('roundtrip')}:v1")
    layer = os.urandom(50_000)

    manifest, digest = push_image(client, ref, layer)
    fetched = client.get_manifest(ref)
    by_digest = client.get_manifest(ref.with_digest(digest))

    assert fetched.data == manifest
    assert fetched.media_type == mediatypes.OCI_MANIFEST
    assert fetched.digest == digest
    assert by_digest.data == manifest
    assert client.has_blob(ref, compute_digest(layer))
    assert not client.has_blob(ref, compute_digest(b"never pushed"))
    assert fetch(client, store, ref, blob_descriptor(layer)) == layer


def test_missing_tag_raises_manifest_unknown(registry: Registry, tmp_path: Path) -> None:
    client = make_client(tmp_path)
    ref = reference.parse(f"{registry.host}/{unique('empty')}:nope")

    with pytest.raises(ManifestUnknown) as raised:
        client.get_manifest(ref)

    assert str(ref) in str(raised.value)


def test_unreachable_registry_names_endpoint(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    client = make_client(tmp_path)

    with pytest.raises(RegistryUnreachable) as raised:
        client.get_manifest(reference.parse(f"{host}/nothing:latest"))

    assert host in str(raised.value)
    assert f"http://{host}" in str(raised.value)


def test_chunked_upload_sends_content_ranges(registry: Registry, tmp_path: Path, store: ContentStore) -> None:
    proxy = Proxy(registry.host)
    try:
        client = make_client(tmp_path)
        client.monolithic_upload_max = 10_000
        client.upload_chunk = 16_384
        ref = reference.parse(f"{proxy.host}/{unique('chunked')}:latest")
        data = os.urandom(40_000)

        sent: list[int] = []
        descriptor = blob_descriptor(data)
        client.upload_blob(ref, descriptor, lambda: io.BytesIO(data), progress=sent.append)

        patches = [r for r in proxy.requests if r.method == "PATCH"]
        assert [p.headers["content-range"] for p in patches] == ["0-16383", "16384-32767", "32768-39999"]
        assert sent == [16_384, 32_768, 40_000]
        assert fetch(client, store, ref, descriptor) == data
    finally:
        proxy.stop()


def test_manifest_digest_mismatch_rejected(tmp_path: Path) -> None:
    own = start_registry(tmp_path / "tampered")
    try:
        client = make_client(tmp_path)
        ref = reference.parse(f"{own.host}/tampered:v1")
        manifest, digest = push_image(client, ref, os.urandom(1000))
        # Same JSON document, other bytes: the registry serves them under the old digest.
        blob_file(own, digest).write_bytes(manifest + b" ")

        with pytest.raises(DigestMismatch) as by_digest:
            client.get_manifest(ref.with_digest(digest))
        with pytest.raises(DigestMismatch) as by_tag:
            client.get_manifest(ref)

        assert digest in str(by_digest.value)
        assert digest in str(by_tag.value)
    finally:
        own.stop()


def test_blob_digest_mismatch_rejected(tmp_path: Path, store: ContentStore) -> None:
    own = start_registry(tmp_path / "tampered")
    try:
        client = make_client(tmp_path)
        ref = reference.parse(f"{own.host}/tampered:v1")
        layer = os.urandom(5000)
        descriptor = upload(client, ref, layer)
        blob_file(own, descriptor.digest).write_bytes(os.urandom(5000))

        with pytest.raises(DigestMismatch):
            fetch(client, store, ref, descriptor)

        assert not store.has(descriptor.digest)
    finally:
        own.stop()


# -- mounts ---------------------------------------------------------------------------


def test_cross_repository_mount(registry: Registry, tmp_path: Path) -> None:
    client = make_client(tmp_path)
    source = reference.parse(f"{registry.host}/{unique('mount-source')}:latest")
    target = reference.parse(f"{registry.host}/{unique('mount-target')}:latest")
    descriptor = upload(client, source, os.urandom(3000))

    mounted = client.mount_blob(target, descriptor.digest, source)

    assert mounted
    assert client.has_blob(target, descriptor.digest)


def test_mount_refused_falls_back_to_upload(registry: Registry, tmp_path: Path) -> None:
    proxy = Proxy(registry.host)
    try:
        client = make_client(tmp_path)
        empty_source = reference.parse(f"{proxy.host}/{unique('no-such-source')}:latest")
        target = reference.parse(f"{proxy.host}/{unique('mount-fallback')}:latest")
        data = os.urandom(3000)
        descriptor = blob_descriptor(data)

        mounted = client.mount_blob(target, descriptor.digest, empty_source)
        client.upload_blob(target, descriptor, lambda: io.BytesIO(data))

        posts = [r for r in proxy.requests if r.method == "POST"]
        puts = [r for r in proxy.requests if r.method == "PUT"]
        assert not mounted
        assert len(posts) == 1  # the upload used the session that the mount request opened
        assert "mount=" in posts[0].path
        assert len(puts) == 1
        assert "digest=" in puts[0].path
        assert client.has_blob(target, descriptor.digest)
    finally:
        proxy.stop()


# -- resuming and redirects -----------------------------------------------------------


def test_download_resumes_after_cut(registry: Registry, tmp_path: Path, store: ContentStore) -> None:
    client = make_client(tmp_path)
    ref_direct = reference.parse(f"{registry.host}/{unique('resume')}:latest")
    data = os.urandom(600_000)
    descriptor = upload(client, ref_direct, data)
    proxy = Proxy(registry.host, cut_after=200_000)
    try:
        through_proxy = reference.parse(f"{proxy.host}/{ref_direct.path}:latest")

        fetched = fetch(make_client(tmp_path), store, through_proxy, descriptor)

        blob_gets = [r for r in proxy.requests if r.is_blob_get]
        ranges = [r.headers.get("range") for r in blob_gets]
        assert proxy.cuts == 1
        assert len(blob_gets) == 2
        assert ranges[0] is None
        assert ranges[1] is not None and ranges[1].startswith("bytes=")
        assert int(ranges[1].removeprefix("bytes=").rstrip("-")) > 0
        assert fetched == data
    finally:
        proxy.stop()


def test_download_resumes_partial_ingest(registry: Registry, tmp_path: Path, store: ContentStore) -> None:
    client = make_client(tmp_path)
    ref = reference.parse(f"{registry.host}/{unique('partial')}:latest")
    data = os.urandom(100_000)
    descriptor = upload(client, ref, data)
    with store.ingest(descriptor.digest, descriptor.size) as ingest:
        ingest.write(data[:30_000])  # an earlier attempt that stopped here
    proxy = Proxy(registry.host)
    try:
        through_proxy = reference.parse(f"{proxy.host}/{ref.path}:latest")

        fetched = fetch(client, store, through_proxy, descriptor)

        blob_gets = [r for r in proxy.requests if r.is_blob_get]
        assert [r.headers.get("range") for r in blob_gets] == ["bytes=30000-"]
        assert fetched == data
    finally:
        proxy.stop()


def test_redirect_to_other_host_drops_authorization(
    token_registry: TokenRegistry, tmp_path: Path, store: ContentStore, blob_server: BlobServer, docker_config: Path
) -> None:
    proxy = Proxy(token_registry.host, redirect_to=blob_server.url)
    try:
        path = unique("redirected")
        data = os.urandom(20_000)
        direct = write_auths(docker_config, token_registry.host, "alice", "wonderland")
        descriptor = upload(make_client(tmp_path, direct), reference.parse(f"{token_registry.host}/{path}:latest"), data)
        blob_server.blobs[descriptor.digest] = data
        credentials = write_auths(docker_config, proxy.host, "alice", "wonderland")
        client = make_client(tmp_path, credentials)
        ref = reference.parse(f"{proxy.host}/{path}:latest")

        assert client.has_blob(ref, descriptor.digest)  # learns the challenge, gets a token
        fetched = fetch(client, store, ref, descriptor)

        blob_gets = [r for r in proxy.requests if r.is_blob_get]
        assert fetched == data
        assert blob_gets[-1].headers.get("authorization", "").startswith("Bearer ")
        assert len(blob_server.requests) == 1
        assert "authorization" not in blob_server.requests[0].headers
    finally:
        proxy.stop()


def test_server_errors_are_retried(registry: Registry, tmp_path: Path, store: ContentStore) -> None:
    ref_direct = reference.parse(f"{registry.host}/{unique('flaky')}:v1")
    layer = os.urandom(3000)
    manifest, _ = push_image(make_client(tmp_path), ref_direct, layer)
    proxy = Proxy(registry.host)
    try:
        delays: list[float] = []
        config = Config(root=tmp_path / "root")
        client = RegistryClient(config, retry=RetryPolicy(attempts=3, base_delay=5.0), sleep=delays.append)
        ref = reference.parse(f"{proxy.host}/{ref_direct.path}:v1")

        proxy.fail_next = 2
        fetched = client.get_manifest(ref)
        proxy.fail_next = 2
        blob = fetch(client, store, ref, blob_descriptor(layer))

        assert fetched.data == manifest
        assert blob == layer
        assert delays == [0.0, 0.0, 0.0, 0.0]  # Retry-After: 0 replaced the 5 s backoff
    finally:
        proxy.stop()


def test_server_errors_give_up_after_attempts(registry: Registry, tmp_path: Path) -> None:
    proxy = Proxy(registry.host, fail_next=10)
    try:
        client = make_client(tmp_path)
        ref = reference.parse(f"{proxy.host}/{unique('down')}:v1")

        with pytest.raises(RegistryError) as raised:
            client.get_manifest(ref)

        assert "503" in str(raised.value)
        assert len(proxy.requests) == FAST_RETRY.attempts
    finally:
        proxy.stop()


# -- mirrors --------------------------------------------------------------------------


def test_mirror_is_tried_first(registry: Registry, tmp_path: Path) -> None:
    mirror = start_registry(tmp_path / "mirror")
    try:
        path = unique("mirrored")
        on_registry = reference.parse(f"{registry.host}/{path}:v1")
        on_mirror = reference.parse(f"{mirror.host}/{path}:v1")
        push_image(make_client(tmp_path), on_registry, b"registry layer")
        mirror_manifest, _ = push_image(make_client(tmp_path), on_mirror, b"mirror layer")
        client = make_client(tmp_path, **{registry.host: RegistryConfig(mirrors=(mirror.url,), insecure=True)})

        fetched = client.get_manifest(on_registry)

        assert fetched.data == mirror_manifest
    finally:
        mirror.stop()


def test_mirror_without_content_falls_through(registry: Registry, tmp_path: Path) -> None:
    mirror = start_registry(tmp_path / "empty-mirror")
    try:
        ref = reference.parse(f"{registry.host}/{unique('only-upstream')}:v1")
        manifest, _ = push_image(make_client(tmp_path), ref, b"upstream layer")
        client = make_client(tmp_path, **{registry.host: RegistryConfig(mirrors=(mirror.url,), insecure=True)})

        assert client.get_manifest(ref).data == manifest
    finally:
        mirror.stop()


def test_mirror_answer_in_final_error(registry: Registry, tmp_path: Path) -> None:
    mirror = start_registry(tmp_path / "empty-mirror")
    try:
        ref = reference.parse(f"{registry.host}/{unique('nowhere')}:v1")
        client = make_client(tmp_path, **{registry.host: RegistryConfig(mirrors=(mirror.url,), insecure=True)})

        with pytest.raises(ManifestUnknown) as caught:
            client.get_manifest(ref)

        message = str(caught.value)
        assert f"not found on {registry.url}" in message
        assert f"mirrors tried first: manifest for {ref} not found on {mirror.url}" in message
    finally:
        mirror.stop()


def test_mirror_down_falls_back_to_registry(registry: Registry, tmp_path: Path, store: ContentStore) -> None:
    ref = reference.parse(f"{registry.host}/{unique('mirror-down')}:v1")
    layer = os.urandom(4000)
    manifest, _ = push_image(make_client(tmp_path), ref, layer)
    down = f"http://127.0.0.1:{free_port()}"
    client = make_client(tmp_path, **{registry.host: RegistryConfig(mirrors=(down,), insecure=True)})

    assert client.get_manifest(ref).data == manifest
    assert fetch(client, store, ref, blob_descriptor(layer)) == layer


# -- token authentication -------------------------------------------------------------


def test_token_auth_push_and_pull(token_registry: TokenRegistry, tmp_path: Path, docker_config: Path) -> None:
    credentials = write_auths(docker_config, token_registry.host, "alice", "wonderland")
    client = make_client(tmp_path, credentials)
    ref = reference.parse(f"{token_registry.host}/{unique('private')}:v1")
    token_registry.tokens.reset()

    manifest, _ = push_image(client, ref, os.urandom(2000))
    fetched = client.get_manifest(ref)

    assert fetched.data == manifest
    assert all(r.user == "alice" for r in token_registry.tokens.requests)


def test_token_is_reused(token_registry: TokenRegistry, tmp_path: Path, docker_config: Path) -> None:
    credentials = write_auths(docker_config, token_registry.host, "alice", "wonderland")
    client = make_client(tmp_path, credentials)
    ref = reference.parse(f"{token_registry.host}/{unique('reuse')}:v1")
    token_registry.tokens.reset()

    for _ in range(3):
        upload(client, ref, os.urandom(100))
    after_push = len(token_registry.tokens.requests)
    for _ in range(3):
        client.has_blob(ref, compute_digest(b"x"))

    assert after_push == 1  # one token for repository:NAME:pull,push served every upload
    assert len(token_registry.tokens.requests) == 1
    assert token_registry.tokens.requests[0].scopes == [f"repository:{ref.path}:pull,push"]


def test_token_refreshed_after_401(token_registry: TokenRegistry, tmp_path: Path, docker_config: Path) -> None:
    proxy = Proxy(token_registry.host)
    try:
        with pytest.raises(urllib.error.HTTPError) as probe:
            urllib.request.urlopen(f"{token_registry.registry.url}/v2/", timeout=5)
        proxy.challenge = probe.value.headers["WWW-Authenticate"]
        probe.value.close()
        client = make_client(tmp_path, write_auths(docker_config, proxy.host, "alice", "wonderland"))
        ref = reference.parse(f"{proxy.host}/{unique('refresh')}:v1")
        descriptor = upload(client, ref, b"first push gets a token")
        token_registry.tokens.reset()

        proxy.reject_next = 1  # as if the cached token had been revoked
        present = client.has_blob(ref, descriptor.digest)

        assert present
        assert len(token_registry.tokens.requests) == 1
    finally:
        proxy.stop()


def test_expired_token_is_renewed(token_registry: TokenRegistry, tmp_path: Path, docker_config: Path) -> None:
    credentials = write_auths(docker_config, token_registry.host, "alice", "wonderland")
    client = make_client(tmp_path, credentials)
    ref = reference.parse(f"{token_registry.host}/{unique('expiry')}:v1")
    token_registry.tokens.expires_in = 1
    try:
        descriptor = upload(client, ref, b"token lives one second")
        token_registry.tokens.reset()
        time.sleep(1.1)

        present = client.has_blob(ref, descriptor.digest)

        assert present
        assert len(token_registry.tokens.requests) == 1
    finally:
        token_registry.tokens.expires_in = 300


def test_token_auth_wrong_password(token_registry: TokenRegistry, tmp_path: Path, docker_config: Path) -> None:
    credentials = write_auths(docker_config, token_registry.host, "alice", "not-the-password")
    client = make_client(tmp_path, credentials)
    ref = reference.parse(f"{token_registry.host}/{unique('private')}:v1")

    with pytest.raises(Unauthorized) as raised:
        client.get_manifest(ref)

    message = str(raised.value)
    assert token_registry.host in message
    assert ref.repository in message
    assert "dockyard login" in message


def test_token_auth_anonymous_is_unauthorized(token_registry: TokenRegistry, tmp_path: Path) -> None:
    client = make_client(tmp_path)
    ref = reference.parse(f"{token_registry.host}/{unique('private')}:v1")

    with pytest.raises(Unauthorized) as raised:
        client.get_manifest(ref)

    assert ref.repository in str(raised.value)
    assert f"dockyard login {token_registry.host}" in str(raised.value)


def test_identity_token_uses_refresh_grant(token_registry: TokenRegistry, tmp_path: Path, docker_config: Path) -> None:
    token_registry.tokens.refresh_tokens["refresh-for-alice"] = "alice"
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {token_registry.host: {"identitytoken": "refresh-for-alice"}}})
    )
    client = make_client(tmp_path, Credentials.load(docker_config))
    ref = reference.parse(f"{token_registry.host}/{unique('oauth')}:v1")
    token_registry.tokens.reset()

    upload(client, ref, b"pushed with an identity token")

    assert [r.grant_type for r in token_registry.tokens.requests] == ["refresh_token"]
    assert token_registry.tokens.requests[0].user == "alice"


# -- Basic authentication -------------------------------------------------------------


def test_basic_auth_push_and_pull(basic_registry: Registry, tmp_path: Path, docker_config: Path) -> None:
    credentials = write_auths(docker_config, basic_registry.host, "alice", "wonderland")
    client = make_client(tmp_path, credentials)
    ref = reference.parse(f"{basic_registry.host}/{unique('basic')}:v1")

    manifest, _ = push_image(client, ref, os.urandom(1000))

    assert client.get_manifest(ref).data == manifest


def test_basic_auth_without_credentials(basic_registry: Registry, tmp_path: Path) -> None:
    client = make_client(tmp_path)
    ref = reference.parse(f"{basic_registry.host}/{unique('basic')}:v1")

    with pytest.raises(Unauthorized) as raised:
        client.get_manifest(ref)

    assert basic_registry.host in str(raised.value)


def test_basic_auth_wrong_password(basic_registry: Registry, tmp_path: Path, docker_config: Path) -> None:
    credentials = write_auths(docker_config, basic_registry.host, "alice", "wrong")
    client = make_client(tmp_path, credentials)

    with pytest.raises(Unauthorized):
        client.get_manifest(reference.parse(f"{basic_registry.host}/{unique('basic')}:v1"))


# -- login and logout -----------------------------------------------------------------


def test_login_logout_round_trip(token_registry: TokenRegistry, tmp_path: Path, docker_config: Path) -> None:
    config = Config(root=tmp_path / "root")
    config_file = docker_config / "config.json"

    login(config, token_registry.host, "alice", "wonderland")

    stored = json.loads(config_file.read_text())["auths"][token_registry.host]
    assert base64.b64decode(stored["auth"]) == b"alice:wonderland"
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    client = RegistryClient(config, retry=FAST_RETRY)
    ref = reference.parse(f"{token_registry.host}/{unique('after-login')}:v1")
    upload(client, ref, b"pushed after login")

    assert logout(token_registry.host)
    assert token_registry.host not in json.loads(config_file.read_text())["auths"]
    assert not logout(token_registry.host)


def test_login_wrong_password_stores_nothing(token_registry: TokenRegistry, tmp_path: Path, docker_config: Path) -> None:
    config = Config(root=tmp_path / "root")

    with pytest.raises(Unauthorized) as raised:
        login(config, token_registry.host, "alice", "wrong")

    assert token_registry.host in str(raised.value)
    assert not (docker_config / "config.json").exists()


HELPER_SCRIPT = """\
#!/usr/bin/env python3
# A Docker credential helper that keeps its entries in a JSON file next to itself.
import json, pathlib, sys
store = pathlib.Path(__file__).with_name("helper-store.json")
entries = json.loads(store.read_text()) if store.exists() else {}
action, data = sys.argv[1], sys.stdin.read()
if action == "store":
    entry = json.loads(data)
    entries[entry["ServerURL"]] = entry
elif action == "get":
    if data.strip() not in entries:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(entries[data.strip()]))
elif action == "erase":
    if entries.pop(data.strip(), None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
store.write_text(json.dumps(entries))
"""


def test_login_with_credential_helper(
    token_registry: TokenRegistry, tmp_path: Path, docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-test"
    helper.write_text(textwrap.dedent(HELPER_SCRIPT))
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "test"}))
    config = Config(root=tmp_path / "root")

    login(config, token_registry.host, "alice", "wonderland")

    helper_entries = json.loads((bin_dir / "helper-store.json").read_text())
    file_entry = json.loads((docker_config / "config.json").read_text())["auths"][token_registry.host]
    assert helper_entries[token_registry.host]["Username"] == "alice"
    assert helper_entries[token_registry.host]["Secret"] == "wonderland"
    assert file_entry == {}  # the secret stays in the helper
    assert tuple(Credentials.load().get(token_registry.host)) == ("alice", "wonderland")

    assert logout(token_registry.host)
    assert json.loads((bin_dir / "helper-store.json").read_text()) == {}
    assert Credentials.load().get(token_registry.host) is None


# -- tag lists ------------------------------------------------------------------------


def test_list_tags(registry: Registry, tmp_path: Path) -> None:
    client = make_client(tmp_path)
    repository = reference.parse(f"{registry.host}/{unique('tagged')}")
    for tag in ("v2", "v1", "latest"):
        push_image(client, repository.with_tag(tag), b"tagged layer")

    assert sorted(client.list_tags(repository)) == ["latest", "v1", "v2"]


def test_list_tags_of_missing_repository(registry: Registry, tmp_path: Path) -> None:
    repository = reference.parse(f"{registry.host}/{unique('untagged')}")

    with pytest.raises(ManifestUnknown, match="NAME_UNKNOWN"):
        make_client(tmp_path).list_tags(repository)


@pytest.mark.parametrize(
    "header, expected",
    [
        ('</v2/a/tags/list?n=2&last=b>; rel="next"', "/v2/a/tags/list?n=2&last=b"),
        ('<https://r.example/v2/a/tags/list?last=b>; rel=next', "https://r.example/v2/a/tags/list?last=b"),
        ('</first>; rel="prev", </second>; rel="next"', "/second"),
        ('</only>; rel="prev"', None),
        (None, None),
    ],
)
def test_next_link_header(header: str | None, expected: str | None) -> None:
    from dockyard.registry.client import _next_link

    assert _next_link(header) == expected
