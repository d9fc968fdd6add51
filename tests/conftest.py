"""Shared pytest configuration. Fixture modules live in tests/support/ and are listed here."""

pytest_plugins: list[str] = [
]
