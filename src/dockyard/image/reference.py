"""Image references, parsed as Docker's ``distribution/reference`` parses them.

Grammar (names are those of ``distribution/reference``)::

    reference       := name [ ":" tag ] [ "@" digest ]
    name            := [ domain "/" ] path
    domain          := host [ ":" port ]
    host            := domain-component ( "." domain-component )* | "[" ipv6 "]"
    path            := path-component ( "/" path-component )*
    path-component  := [a-z0-9]+ ( separator [a-z0-9]+ )*
    separator       := "." | "_" | "__" | "-"+
    tag             := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}

Normalisation follows Docker's rules for familiar names:

- The first ``/``-separated component is a domain only if it contains ``.``
  or ``:`` or is ``localhost``. Otherwise the domain is ``docker.io``.
- ``index.docker.io`` becomes ``docker.io``.
- A one-component path on ``docker.io`` gets the ``library/`` prefix.
- A reference with neither tag nor digest gets the tag ``latest``.

This module is imported by every command, so it imports only ``re``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from dockyard.errors import InvalidReference
from dockyard.image import digest as digests

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPOSITORY_PREFIX = "library/"
DEFAULT_TAG = "latest"
LOCALHOST = "localhost"

# Longest accepted name, counted over "<domain>/<path>" as Docker did up to
# distribution/reference v0.5 (later versions count the path only).
NAME_MAX_LENGTH = 255

# Patterns are kept as strings and matched with _matches(), so that they are
# compiled (and cached by the re module) on first use, not on every import.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"\w[\w.-]{0,127}"
# The digest syntax that references allow. digests.problem() also checks the
# algorithm and the length, as go-digest does.
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_FULL_ID = r"[a-f0-9]{64}"
_IMAGE_ID = r"(?:sha256:)?[a-f0-9]{1,64}"


def _matches(pattern: str, text: str) -> bool:
    # re.ASCII keeps \w to [A-Za-z0-9_], as in Go's regexp.
    return re.fullmatch(pattern, text, re.ASCII) is not None


@dataclass(frozen=True)
class Reference:
    """A normalised image reference: ``docker.io/library/busybox:latest``.

    When both ``tag`` and ``digest`` are set, the digest decides what is pulled
    or run, and the tag is kept for display.
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The full repository name, ``<domain>/<path>``."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def familiar_repository(self) -> str:
        """Return Docker's short repository name: ``busybox``, ``user/app``, ``localhost:5000/a/b``.

        Unlike Docker, this keeps ``docker.io/`` when the path's first
        component would read as a domain (``docker.io/foo.bar/app``), so
        that the short form always parses back to the same reference.
        """
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        if self.path.startswith(OFFICIAL_REPOSITORY_PREFIX):
            remainder = self.path[len(OFFICIAL_REPOSITORY_PREFIX):]
            if "/" not in remainder:
                return remainder
        first = self.path.partition("/")[0]
        if first == LOCALHOST or "." in first:
            return self.repository
        return self.path

    def familiar(self) -> str:
        """Return Docker's short form: ``busybox:latest``, ``localhost:5000/a/b:t@sha256:…``."""
        text = self.familiar_repository()
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def with_tag(self, tag: str) -> Reference:
        """Return this reference with ``tag``, keeping any digest. Raises InvalidReference for an invalid tag."""
        if not _matches(_TAG, tag):
            raise InvalidReference(f"{self.repository}:{tag}", f"invalid tag {tag!r}")
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> Reference:
        """Return this reference with ``digest``, keeping any tag. Raises InvalidReference for an invalid digest."""
        reason = digests.problem(digest)
        if reason is not None:
            raise InvalidReference(f"{self.repository}@{digest}", reason)
        return replace(self, digest=digest)

    def without_tag_or_digest(self) -> Reference:
        """Return the bare repository, with neither tag nor digest."""
        return replace(self, tag=None, digest=None)


def parse(text: str) -> Reference:
    """Parse an image reference in Docker's familiar or full form.

    Raises InvalidReference naming the text and the reason.
    """
    reference = _parse(text)
    if reference.tag is None and reference.digest is None:
        reference = replace(reference, tag=DEFAULT_TAG)
    return reference


def parse_repository(text: str) -> Reference:
    """Parse a reference that may carry a tag but no digest, such as the target of ``tag``."""
    reference = parse(text)
    if reference.digest is not None:
        raise InvalidReference(text, "a digest is not allowed here, only a repository name and tag")
    return reference


def is_name_only(text: str) -> bool:
    """Tell whether ``text`` names a repository with neither a tag nor a digest. Raises InvalidReference."""
    reference = _parse(text)
    return reference.tag is None and reference.digest is None


def looks_like_image_id(text: str) -> bool:
    """Tell whether ``text`` has the form of a full or short image ID, with or without ``sha256:``.

    Short hex strings such as ``cafe`` are also valid repository names, so
    callers look such text up as a name first, as Docker does. Check this
    before parse(): ``sha256:<hex>`` also parses as the repository ``sha256``
    with a 64-character tag.
    """
    return _matches(_IMAGE_ID, text)


def _parse(text: str) -> Reference:
    if not text:
        raise InvalidReference(text, "repository name must have at least one component")
    if _matches(_FULL_ID, text):
        raise InvalidReference(text, "a repository name cannot be a 64-character hexadecimal string")

    domain, remainder = _split_domain(text)
    name_part, at, digest = remainder.partition("@")
    path, colon, tag = name_part.partition(":")

    if path.lower() != path:
        raise InvalidReference(text, f"repository name {path!r} must be lowercase")
    if not _matches(_DOMAIN, domain):
        raise InvalidReference(text, f"invalid registry domain {domain!r}")
    if not _matches(_PATH, path):
        raise InvalidReference(
            text,
            f"invalid repository name {path!r}: use lowercase letters and digits, "
            "separated by '.', '_', '__', '-' or '/'",
        )
    if len(domain) + 1 + len(path) > NAME_MAX_LENGTH:
        raise InvalidReference(text, f"repository name must not be more than {NAME_MAX_LENGTH} characters")
    if colon and not _matches(_TAG, tag):
        raise InvalidReference(
            text, f"invalid tag {tag!r}: use up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'"
        )
    if at:
        reason = digests.problem(digest)
        if reason is None and not _matches(_DIGEST, digest):
            reason = f"invalid digest {digest!r}"
        if reason is not None:
            raise InvalidReference(text, f"invalid digest: {reason}")

    return Reference(domain=domain, path=path, tag=tag if colon else None, digest=digest if at else None)


def _split_domain(text: str) -> tuple[str, str]:
    """Split ``text`` into the registry domain and the rest, applying Docker's defaults."""
    first, slash, rest = text.partition("/")
    if slash and (first == LOCALHOST or "." in first or ":" in first):
        domain, remainder = first, rest
    else:
        domain, remainder = DEFAULT_DOMAIN, text
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPOSITORY_PREFIX + remainder
    return domain, remainder

