"""Shared pytest configuration. Fixture modules live in tests/support/ and are listed here."""

pytest_plugins: list[str] = [
    "tests.support.layers",
    "tests.support.registry",
    "tests.support.tokenserver",
    "tests.support.proxy",
    "tests.support.images",
    "tests.support.leaks",
    "tests.support.bundles",
    "tests.support.cli",
    "tests.support.cliserver",
    "tests.support.containers",
    "tests.support.network",
    "tests.support.api",
]
