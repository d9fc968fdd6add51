"""Image reference parsing, checked against Docker's documented behaviour and with Hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dockyard.errors import DockyardError, InvalidArgument, InvalidReference
from dockyard.image.reference import Reference, looks_like_image_id, parse, parse_repository

HEX64 = "0123456789abcdef" * 4
DIGEST = f"sha256:{HEX64}"


@pytest.mark.parametrize(
    ("text", "domain", "path", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/user/app:v1", "docker.io", "user/app", "v1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", None),
        ("[::1]:5000/x", "[::1]:5000", "x", "latest", None),
        ("[::1]/x", "[::1]", "x", "latest", None),
        ("127.0.0.1:5000/ns/app", "127.0.0.1:5000", "ns/app", "latest", None),
        ("Registry.Example.COM/app", "Registry.Example.COM", "app", "latest", None),
        ("example:5000/app", "example:5000", "app", "latest", None),
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),
        (f"busybox@{DIGEST}", "docker.io", "library/busybox", None, DIGEST),
        (f"busybox:1.36@{DIGEST}", "docker.io", "library/busybox", "1.36", DIGEST),
        ("ns/a.b_c__d-e---f", "docker.io", "ns/a.b_c__d-e---f", "latest", None),
        ("app:_tag.with-Upper_CASE", "docker.io", "library/app", "_tag.with-Upper_CASE", None),
        (f"app@sha512:{'ab' * 64}", "docker.io", "library/app", None, f"sha512:{'ab' * 64}"),
    ],
)
def test_parse_valid(text: str, domain: str, path: str, tag: str | None, digest: str | None) -> None:
    reference = parse(text)
    assert reference.domain == domain
    assert reference.path == path
    assert reference.tag == tag
    assert reference.digest == digest


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "at least one component"),
        ("Busybox", "must be lowercase"),
        ("Foo/bar", "must be lowercase"),
        ("registry.example/App", "must be lowercase"),
        (HEX64, "64-character hexadecimal"),
        ("app:", "invalid tag"),
        ("app:-tag", "invalid tag"),
        ("app:.tag", "invalid tag"),
        (f"app:{'t' * 129}", "invalid tag"),
        ("app:a:b", "invalid tag"),
        ("app@sha256:abc", "64 lowercase hex digits, not 3 characters"),
        ("app@sha256:short", "64 lowercase hex digits, not 5 characters"),
        (f"app@sha256:{HEX64.upper()}", "64 lowercase hex digits, and '0123456789ABCDEF"),
        (f"app@md5:{HEX64}", "unsupported digest algorithm"),
        ("app@", "invalid digest"),
        ("app@sha256", "invalid digest"),
        ("a__b___c", "invalid repository name"),
        ("a..b", "invalid repository name"),
        ("-app", "invalid repository name"),
        ("app-", "invalid repository name"),
        ("a//b", "invalid repository name"),
        ("ns/app/", "invalid repository name"),
        ("app name", "invalid repository name"),
        ("bad_domain.com:port/app", "invalid registry domain"),
        ("-bad.com/app", "invalid registry domain"),
        ("[::1/app", "invalid registry domain"),
        # Docker accepts this one as a name without a domain; it cannot be pulled.
        ("a.b_c/g", "invalid registry domain"),
        (f"registry.example/{'a' * 239}", "255 characters"),
        (f"ns/{'a' * 243}", "255 characters"),
    ],
)
def test_parse_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse(text)
    assert reason in str(caught.value)
    assert f'"{text}"' in str(caught.value)


def test_invalid_reference_is_invalid_argument() -> None:
    with pytest.raises(InvalidArgument):
        parse("UPPER")


def test_name_length_limit_counts_domain() -> None:
    # "registry.example/" is 17 characters, so a 238-character path makes exactly 255.
    assert parse(f"registry.example/{'a' * 238}").path == "a" * 238
    # "docker.io/" is added to names without a domain and counts too.
    assert parse(f"ns/{'a' * 242}").path == "ns/" + "a" * 242


def test_str_full_form() -> None:
    assert str(parse("busybox")) == "docker.io/library/busybox:latest"
    assert str(parse(f"x/y:t@{DIGEST}")) == f"docker.io/x/y:t@{DIGEST}"
    assert str(parse(f"x/y@{DIGEST}")) == f"docker.io/x/y@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "familiar", "familiar_repository"),
    [
        ("busybox", "busybox:latest", "busybox"),
        ("docker.io/library/busybox:1", "busybox:1", "busybox"),
        ("user/app:v2", "user/app:v2", "user/app"),
        ("docker.io/library/a/b", "library/a/b:latest", "library/a/b"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b"),
        (f"busybox@{DIGEST}", f"busybox@{DIGEST}", "busybox"),
        # Docker would print "foo.bar/app" here, which parses with the domain foo.bar.
        ("docker.io/foo.bar/app", "docker.io/foo.bar/app:latest", "docker.io/foo.bar/app"),
        ("docker.io/localhost/app", "docker.io/localhost/app:latest", "docker.io/localhost/app"),
    ],
)
def test_familiar_forms(text: str, familiar: str, familiar_repository: str) -> None:
    reference = parse(text)
    assert reference.familiar() == familiar
    assert reference.familiar_repository() == familiar_repository
    assert parse(reference.familiar()) == reference


def test_repository_property() -> None:
    assert parse("localhost:5000/a/b:t").repository == "localhost:5000/a/b"


def test_with_tag_keeps_digest() -> None:
    reference = parse(f"app@{DIGEST}").with_tag("v1")
    assert reference.tag == "v1"
    assert reference.digest == DIGEST


def test_with_tag_rejects_bad_tag() -> None:
    with pytest.raises(InvalidReference, match="invalid tag"):
        parse("app").with_tag("-x")


def test_with_digest_keeps_tag() -> None:
    reference = parse("app:v1").with_digest(DIGEST)
    assert reference.tag == "v1"
    assert reference.digest == DIGEST
    assert str(reference) == f"docker.io/library/app:v1@{DIGEST}"


def test_with_digest_rejects_bad_digest() -> None:
    with pytest.raises(InvalidReference, match="64 lowercase hex digits"):
        parse("app").with_digest("sha256:abcd")


def test_parse_repository_accepts_tag() -> None:
    assert parse_repository("app:v1") == Reference("docker.io", "library/app", "v1")


def test_parse_repository_rejects_digest() -> None:
    with pytest.raises(InvalidReference, match="digest is not allowed"):
        parse_repository(f"app@{DIGEST}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEX64, True),
        (f"sha256:{HEX64}", True),
        ("0123456789ab", True),
        ("sha256:0123", True),
        ("busybox", False),
        (HEX64 + "0", False),
        (HEX64.upper(), False),
        ("sha512:0123", False),
        ("", False),
    ],
)
def test_looks_like_image_id(text: str, expected: bool) -> None:
    assert looks_like_image_id(text) is expected


# ---------------------------------------------------------------------------
# Property tests

LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"

alphanumeric = st.text(LOWER_ALNUM, min_size=1, max_size=6)
separators = st.sampled_from([".", "_", "__", "-", "--", "---"])
path_components = st.builds(
    lambda first, rest: first + "".join(separator + part for separator, part in rest),
    alphanumeric,
    st.lists(st.tuples(separators, alphanumeric), max_size=3),
)
domain_components = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?", fullmatch=True)
ports = st.integers(min_value=1, max_value=65535).map(lambda port: f":{port}")
ipv6_hosts = st.ip_addresses(v=6).map(str).filter(lambda text: "." not in text).map(lambda text: f"[{text}]")
domains = st.one_of(
    st.builds(lambda parts, port: ".".join(parts) + port, st.lists(domain_components, min_size=2, max_size=3), ports | st.just("")),
    st.builds(lambda host, port: host + port, domain_components, ports),
    st.builds(lambda port: "localhost" + port, ports | st.just("")),
    st.builds(lambda host, port: host + port, ipv6_hosts, ports | st.just("")),
)
tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", fullmatch=True)
digest_values = st.text("0123456789abcdef", min_size=64, max_size=64).map(lambda hex_value: f"sha256:{hex_value}")


@st.composite
def references(draw: st.DrawFn) -> tuple[str, Reference, range]:
    """Draw a valid reference text, the Reference that Docker's rules make of it, and where its path is in the text."""
    domain = draw(st.none() | domains)
    components = draw(st.lists(path_components, min_size=1, max_size=4))
    if domain is None and len(components) > 1:
        # Such a first component would be read as a domain.
        assume("." not in components[0] and components[0] != "localhost")
    tag = draw(st.none() | tags)
    digest = draw(st.none() | digest_values)

    path = "/".join(components)
    text = path if domain is None else f"{domain}/{path}"
    path_span = range(len(text) - len(path), len(text))
    if tag is not None:
        text += f":{tag}"
    if digest is not None:
        text += f"@{digest}"

    expected_domain = "docker.io" if domain in (None, "index.docker.io") else domain
    expected_path = path
    if expected_domain == "docker.io" and "/" not in path:
        expected_path = f"library/{path}"
    assume(len(expected_domain) + 1 + len(expected_path) <= 255)
    if tag is None and digest is None:
        tag = "latest"
    return text, Reference(expected_domain, expected_path, tag, digest), path_span


@given(references())
def test_generated_references_parse(case: tuple[str, Reference, range]) -> None:
    text, expected, _ = case
    assert parse(text) == expected


@given(references())
def test_str_round_trip(case: tuple[str, Reference, range]) -> None:
    reference = parse(case[0])
    assert parse(str(reference)) == reference
    assert str(parse(str(reference))) == str(reference)


@given(references())
def test_familiar_round_trip(case: tuple[str, Reference, range]) -> None:
    reference = parse(case[0])
    assert parse(reference.familiar()) == reference
    assert parse(reference.familiar_repository()).repository == reference.repository


@given(references(), st.data())
def test_uppercase_repository_rejected(case: tuple[str, Reference, range], data: st.DataObject) -> None:
    text, _, path_span = case
    letters = [index for index in path_span if text[index].isalpha()]
    assume(letters)
    index = data.draw(st.sampled_from(letters))
    changed = text[:index] + text[index].upper() + text[index + 1 :]
    with pytest.raises(InvalidReference):
        parse(changed)


BAD_CHARACTERS = st.sampled_from(list("!\"#$%&'()*+,;<=>?[\\]^`{|}~ \t\n\x00") + ["é", "\u00a0", "ß", "Ａ"])


@given(references(), BAD_CHARACTERS, st.data())
def test_bad_character_in_repository_rejected(
    case: tuple[str, Reference, range], bad: str, data: st.DataObject
) -> None:
    text, _, path_span = case
    index = data.draw(st.integers(min_value=path_span.start, max_value=path_span.stop))
    changed = text[:index] + bad + text[index:]
    with pytest.raises(InvalidReference):
        parse(changed)


@settings(max_examples=500)
@given(st.text())
def test_arbitrary_text_parses_or_raises_invalid_reference(text: str) -> None:
    try:
        reference = parse(text)
    except InvalidReference:
        return
    except DockyardError as error:  # pragma: no cover - the assertion explains the failure
        pytest.fail(f"parse({text!r}) raised {type(error).__name__}, not InvalidReference")
    assert parse(str(reference)) == reference
