"""Dockerfile parsing and variable substitution, by the rules of Docker's Dockerfile reference.

``parse(text)`` splits a Dockerfile into ``Instruction`` objects. It handles
the parser directives at the top (``# escape=`` and ``# syntax=``), line
continuations with the escape character, comment lines (also inside a
continued instruction), and heredocs (``<<EOF``, ``<<-EOF``, ``<<"EOF"``)
for ``RUN``, ``COPY`` and ``ADD``. Instruction arguments stay raw text:
variables are substituted by the builder, which knows their values, with
``expand`` and ``expand_words``.

Substitution follows Docker's shell-like lexer: single quotes keep their
content literal, double quotes allow substitution, the escape character
makes the next character literal, and the quotes themselves are removed.
Supported forms are ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR-word}``,
``${VAR:+word}``, ``${VAR+word}`` and ``${VAR:?message}``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Mapping

from dockyard.errors import BuildError

DEFAULT_ESCAPE = "\\"

# Instructions whose arguments may contain heredocs.
HEREDOC_INSTRUCTIONS = frozenset({"RUN", "COPY", "ADD"})

KNOWN_INSTRUCTIONS = frozenset({
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
})

# Parser directives Docker knows; ``syntax`` and ``check`` are accepted and have no effect here.
DIRECTIVES = frozenset({"escape", "syntax", "check"})

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
HEREDOC_PATTERN = re.compile(r"<<(-?)\s*(?:\"([^\"]+)\"|'([^']+)'|([A-Za-z0-9_]+))")
_FLAG = re.compile(r"^--([a-z][a-z-]*)(?:=(.*))?$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Heredoc:
    """The body of one ``<<NAME`` heredoc; ``expand`` is False when its name was quoted."""

    name: str
    content: str
    expand: bool = True


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction.

    ``arguments`` is the text after the keyword and its flags, with line
    continuations joined. ``original`` is the instruction as written, on one
    line, for ``Step N/M :`` output.
    """

    keyword: str
    arguments: str
    line: int
    original: str
    flags: dict[str, str] = field(default_factory=dict)
    heredocs: tuple[Heredoc, ...] = ()

    def json_form(self) -> list[str] | None:
        """Return the arguments as a list when they are a JSON array of strings (exec form), else None."""
        return json_array(self.arguments)


@dataclass(frozen=True)
class Dockerfile:
    instructions: list[Instruction]
    escape: str = DEFAULT_ESCAPE


def json_array(text: str) -> list[str] | None:
    """Return ``text`` as a list of strings when it is a JSON array of strings, else None."""
    stripped = text.strip()
    if not stripped.startswith("["):
        return None
    try:
        value = json.loads(stripped)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


# -- parsing ------------------------------------------------------------------------------------


def parse(text: str) -> Dockerfile:
    """Parse Dockerfile text; raises BuildError naming the line of a malformed instruction."""
    lines = text.splitlines()
    escape = DEFAULT_ESCAPE
    index = 0

    # Parser directives: only at the very top, before any blank line, comment or instruction.
    seen: set[str] = set()
    while index < len(lines):
        match = _DIRECTIVE.match(lines[index].strip())
        if not match or match.group(1).lower() not in DIRECTIVES:
            break  # an unknown directive is a comment, and so ends the directives
        name, value = match.group(1).lower(), match.group(2)
        if name in seen:
            raise BuildError(f"Dockerfile line {index + 1}: only one {name} parser directive can be used")
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise BuildError(f"Dockerfile line {index + 1}: invalid escape token {value!r}: use \\ or `")
            escape = value
        index += 1

    instructions: list[Instruction] = []
    while index < len(lines):
        start = index
        stripped = lines[index].strip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = []
        current = stripped
        # A line that ends with the escape character continues on the next line.
        while _continues(current, escape):
            parts.append(current[:-1])
            current = ""
            while index < len(lines):
                candidate = lines[index].strip()
                index += 1
                if candidate.startswith("#") or not candidate:
                    continue  # comments and empty lines inside a continued instruction are dropped
                current = candidate
                break
        parts.append(current)
        joined = "".join(parts).strip()
        keyword, _, rest = joined.partition(" ")
        if "\t" in keyword:
            keyword, _, tail = keyword.partition("\t")
            rest = tail + " " + rest
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword not in KNOWN_INSTRUCTIONS:
            raise BuildError(f"Dockerfile line {start + 1}: unknown instruction: {keyword}")
        flags, arguments = split_flags(rest, start + 1) if keyword in ("FROM", "RUN", "COPY", "ADD", "HEALTHCHECK") else ({}, rest)
        heredocs: list[Heredoc] = []
        if keyword in HEREDOC_INSTRUCTIONS and json_array(arguments) is None:
            for match in HEREDOC_PATTERN.finditer(arguments):
                strip_tabs = match.group(1) == "-"
                name = match.group(2) or match.group(3) or match.group(4)
                body, index = _read_heredoc(lines, index, name, strip_tabs, start + 1)
                heredocs.append(Heredoc(name, body, expand=match.group(4) is not None))
        instructions.append(Instruction(keyword, arguments, start + 1, joined, flags, tuple(heredocs)))
    return Dockerfile(instructions, escape)


def _continues(line: str, escape: str) -> bool:
    return line.endswith(escape) and not line.startswith("#")


def _read_heredoc(lines: list[str], index: int, name: str, strip_tabs: bool, line_number: int) -> tuple[str, int]:
    body: list[str] = []
    while index < len(lines):
        line = lines[index]
        index += 1
        if strip_tabs:
            line = line.lstrip("\t")
        if line == name:
            return "".join(item + "\n" for item in body), index
        body.append(line)
    raise BuildError(f"Dockerfile line {line_number}: heredoc <<{name} has no terminating line {name!r}")


def split_flags(text: str, line: int) -> tuple[dict[str, str], str]:
    """Split leading ``--name=value`` flags off an instruction's arguments."""
    flags: dict[str, str] = {}
    rest = text
    while rest.startswith("--"):
        word, _, remainder = rest.partition(" ")
        if word == "--":
            # A bare "--" ends the flags, as in Docker's flag parser.
            return flags, remainder.lstrip()
        match = _FLAG.match(word)
        if not match:
            raise BuildError(f"Dockerfile line {line}: invalid flag {word!r}")
        flags[match.group(1)] = match.group(2) if match.group(2) is not None else "true"
        rest = remainder.lstrip()
    return flags, rest


# -- substitution -------------------------------------------------------------------------------


def split_words(text: str, escape: str = DEFAULT_ESCAPE) -> list[str]:
    """Split ``text`` on unquoted whitespace, keeping quotes and escapes in the words for ``expand``."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    in_word = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == escape and index + 1 < len(text) and quote != "'":
            current.append(char + text[index + 1])
            in_word = True
            index += 2
            continue
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char.isspace():
            if in_word:
                words.append("".join(current))
                current = []
                in_word = False
            index += 1
            continue
        current.append(char)
        in_word = True
        index += 1
    if in_word:
        words.append("".join(current))
    return words


def expand(word: str, env: Mapping[str, str], escape: str = DEFAULT_ESCAPE) -> str:
    """Substitute variables from ``env`` in ``word`` and remove its quotes and escapes.

    Raises BuildError for an unterminated quote or ``${``, a bad modifier, or
    ``${VAR:?message}`` with VAR unset or empty.
    """
    return _Lexer(word, env, escape).process()


def expand_heredoc(content: str, env: Mapping[str, str], escape: str = DEFAULT_ESCAPE) -> str:
    """Substitute variables in the body of a heredoc whose name was not quoted; quotes in it stay as written."""
    return _Lexer(content, env, escape, quotes=False).process()


def expand_words(text: str, env: Mapping[str, str], escape: str = DEFAULT_ESCAPE) -> list[str]:
    """Split ``text`` into words and expand each (``COPY a b``, ``EXPOSE $PORT``); a word that expands to nothing is dropped."""
    words = []
    for word in split_words(text, escape):
        expanded = expand(word, env, escape)
        if expanded or not _only_variables(word):
            words.append(expanded)
    return words


def _only_variables(word: str) -> bool:
    return word.startswith("$") and "'" not in word and '"' not in word


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str, quotes: bool = True) -> None:
        self.text = text
        self.env = env
        self.escape = escape
        self.quotes = quotes
        self.position = 0

    def peek(self) -> str:
        return self.text[self.position] if self.position < len(self.text) else ""

    def next(self) -> str:
        char = self.peek()
        self.position += 1
        return char

    def process(self, stop: str = "") -> str:
        """Read up to the end, or up to the unquoted, unescaped character ``stop`` (left unread)."""
        result: list[str] = []
        while self.position < len(self.text):
            char = self.peek()
            if stop and char == stop:
                break
            self.position += 1
            if char == self.escape:
                if self.position < len(self.text):
                    escaped = self.next()
                    if not self.quotes and escaped not in ("$", self.escape):
                        result.append(char)  # in a heredoc only "$" and the escape character itself are escaped
                    result.append(escaped)
                continue
            if char in "'\"" and not self.quotes:
                result.append(char)
            elif char == "'":
                result.append(self.single_quoted())
            elif char == '"':
                result.append(self.double_quoted())
            elif char == "$":
                result.append(self.variable())
            else:
                result.append(char)
        return "".join(result)

    def single_quoted(self) -> str:
        end = self.text.find("'", self.position)
        if end < 0:
            raise BuildError(f"unexpected end of statement while looking for matching single-quote in {self.text!r}")
        content = self.text[self.position:end]
        self.position = end + 1
        return content

    def double_quoted(self) -> str:
        result: list[str] = []
        while True:
            if self.position >= len(self.text):
                raise BuildError(f"unexpected end of statement while looking for matching double-quote in {self.text!r}")
            char = self.next()
            if char == '"':
                return "".join(result)
            if char == self.escape and self.peek() in ('"', "$", self.escape):
                result.append(self.next())
            elif char == "$":
                result.append(self.variable())
            else:
                result.append(char)

    def variable(self) -> str:
        """Expand the variable after a ``$``; a ``$`` not followed by a name stays literal."""
        if self.peek() == "{":
            self.position += 1
            return self.braced()
        match = _NAME.match(self.text, self.position)
        if not match:
            return "$"
        self.position = match.end()
        return self.env.get(match.group(0), "")

    def braced(self) -> str:
        match = _NAME.match(self.text, self.position)
        if not match:
            raise BuildError(f"bad substitution: no variable name after '${{' in {self.text!r}")
        name = match.group(0)
        self.position = match.end()
        char = self.next()
        if char == "}":
            return self.env.get(name, "")
        modifier = char
        if char == ":":
            modifier += self.next()
        if modifier not in (":-", "-", ":+", "+", ":?", "?"):
            raise BuildError(f"unsupported modifier ({modifier}) in substitution of {name!r} in {self.text!r}")
        word = self.process(stop="}")
        if self.next() != "}":
            raise BuildError(f"missing '}}' in substitution of {name!r} in {self.text!r}")
        value = self.env.get(name)
        is_set = value is not None
        check = bool(value) if modifier.startswith(":") else is_set
        if modifier.endswith("-"):
            return value if check else word  # type: ignore[return-value]
        if modifier.endswith("+"):
            return word if check else ""
        if not check:
            raise BuildError(f"{name}: {word or 'is not allowed to be unset'}")
        return value  # type: ignore[return-value]


def parse_key_values(text: str, instruction: str, escape: str = DEFAULT_ESCAPE) -> list[tuple[str, str]]:
    """Split ``ENV``/``LABEL`` arguments into raw key and value words: ``k=v k2="v 2"`` or the legacy ``k v w``.

    The values keep their quotes; the builder expands them.
    """
    words = split_words(text, escape)
    if not words:
        raise BuildError(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        key, _, rest = text.strip().partition(" ")
        if not rest.strip():
            raise BuildError(f"{instruction} names must be followed by '=' and a value, not {text!r}")
        return [(key, rest.strip())]
    pairs = []
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or not key:
            raise BuildError(f"{instruction}: {word!r} is not of the form key=value")
        pairs.append((key, value))
    return pairs
