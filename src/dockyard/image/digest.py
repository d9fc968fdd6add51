"""Content digests in the OCI form ``<algorithm>:<hex>``.

Only the algorithms that the OCI image spec registers are accepted: sha256
(the default everywhere), sha384 and sha512. The encoded part must be lowercase
hex of the algorithm's exact length, as go-digest checks it.
"""

from __future__ import annotations

from dockyard.errors import DigestMismatch, InvalidArgument

SHA256 = "sha256"

# hashlib is imported inside the functions that hash, because reference.py
# imports this module on every command and only needs problem().

# Hex length of each registered algorithm's encoded value.
HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

_HEX_CHARS = frozenset("0123456789abcdef")


def sha256_hex(data: bytes) -> str:
    """Return the lowercase hex SHA-256 of ``data``."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


def of(data: bytes) -> str:
    """Return the digest ``sha256:<hex>`` of ``data``."""
    return f"{SHA256}:{sha256_hex(data)}"


def problem(text: str) -> str | None:
    """Return why ``text`` is not a valid digest, or None when it is valid."""
    algorithm, colon, encoded = text.partition(":")
    if not colon or not algorithm or not encoded:
        return "a digest has the form <algorithm>:<hex>"
    expected_length = HEX_LENGTHS.get(algorithm)
    if expected_length is None:
        return f"unsupported digest algorithm {algorithm!r} (supported: {', '.join(HEX_LENGTHS)})"
    if len(encoded) != expected_length:
        return f"a {algorithm} value must be {expected_length} lowercase hex digits, not {len(encoded)} characters"
    if not set(encoded) <= _HEX_CHARS:
        return f"a {algorithm} value must be {expected_length} lowercase hex digits, and {encoded!r} has other characters"
    return None


def validate(text: str) -> str:
    """Return ``text`` unchanged if it is a valid digest, else raise InvalidArgument."""
    reason = problem(text)
    if reason is not None:
        raise InvalidArgument(f'invalid digest "{text}": {reason}')
    return text


def hex_part(digest: str) -> str:
    """Return the encoded part of a validated digest: ``sha256:ab…`` gives ``ab…``."""
    return validate(digest).partition(":")[2]


def verify(data: bytes, expected: str, name: str) -> None:
    """Raise DigestMismatch unless ``data`` hashes to ``expected``; ``name`` identifies the data in the message."""
    import hashlib

    algorithm = validate(expected).partition(":")[0]
    hash_object = hashlib.new(algorithm, data)
    actual = f"{hash_object.name}:{hash_object.hexdigest()}"
    if actual != expected:
        raise DigestMismatch(name, expected, actual)
