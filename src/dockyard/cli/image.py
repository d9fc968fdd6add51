"""Image commands: pull, push, images, tag, rmi, inspect, history, save, load, login, logout."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the image commands to the top-level parser."""
