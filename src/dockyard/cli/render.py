"""Output for the CLI: Docker's human sizes and times, tables, Go-style ``--format`` templates and progress.

Only the standard library is imported at module level; ``rich`` and ``json``
are imported where they are used, because every command imports this module.
"""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence, TextIO

from dockyard.errors import InvalidArgument
from dockyard.humanize import human_duration

# -- sizes and times ------------------------------------------------------

SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size(size: float) -> str:
    """Format bytes as Docker does: decimal units, three significant digits ("4.26MB", "0B")."""
    value = float(size)
    unit = 0
    while value >= 1000 and unit < len(SIZE_UNITS) - 1:
        value /= 1000
        unit += 1
    return f"{value:.3g}{SIZE_UNITS[unit]}"


def parse_timestamp(text: str | None) -> float | None:
    """Parse an RFC 3339 time such as ``2024-05-01T12:00:00.123456789Z`` into Unix seconds."""
    if not text:
        return None
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text.strip())
    if not match:
        return None
    base, fraction, zone = match.groups()
    moment = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + (float(fraction) if fraction else 0.0)


def time_ago(timestamp: float | None, now: float | None = None) -> str:
    """Format a Unix time as "2 hours ago", or "N/A" when it is unknown (Docker's wording)."""
    if timestamp is None or timestamp <= 0:
        return "N/A"
    now = time.time() if now is None else now
    return human_duration(max(0.0, now - timestamp)) + " ago"


def local_time(timestamp: float | None) -> str:
    """Format a Unix time like Docker's ``CreatedAt``: ``2024-05-01 12:00:00 +0000 UTC``."""
    if timestamp is None:
        return ""
    moment = datetime.fromtimestamp(timestamp, timezone.utc).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S %z ") + (moment.tzname() or "")


def rfc3339_time(timestamp: float | None) -> str:
    """Format a Unix time in RFC 3339 in the local zone, as Go's ``time.RFC3339`` does: ``2024-05-01T12:00:00Z``."""
    if timestamp is None:
        return ""
    text = datetime.fromtimestamp(timestamp, timezone.utc).astimezone().isoformat(timespec="seconds")
    # Go writes a zero offset as "Z".
    return text[:-len("+00:00")] + "Z" if text.endswith("+00:00") else text


def short_id(digest: str, no_trunc: bool = False) -> str:
    """Return the 12-hex short form of an ID or digest, or the full ``sha256:…`` with ``no_trunc``."""
    if no_trunc:
        return digest
    return digest.split(":", 1)[-1][:12]


# -- tables ----------------------------------------------------------------

# Docker's tabwriter settings: cells are padded to at least 10 columns, with 3 spaces between columns.
MIN_CELL_WIDTH = 10
CELL_PADDING = 3


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Align rows into columns as Docker's tab writer does; the last column is not padded."""
    if not rows:
        return ""
    columns = max(len(row) for row in rows)
    widths = [0] * columns
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], len(cell) + CELL_PADDING, MIN_CELL_WIDTH)
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[index]) for index, cell in enumerate(row[:-1])]
        lines.append("".join(cells) + (row[-1] if row else ""))
    return "\n".join(lines) + "\n"


# -- Go templates ------------------------------------------------------------


class TemplateError(InvalidArgument):
    """A ``--format`` template that does not parse or cannot be evaluated."""

    def __init__(self, template: str, reason: str) -> None:
        super().__init__(f"invalid --format template {template!r}: {reason}")


class TemplateExecutionError(InvalidArgument):
    """A ``--format`` template that parsed but failed while it ran, in Go's text/template wording."""


class Struct(dict):
    """A template row that behaves as a Go struct of type ``go_type``, so a field it lacks is an error.

    Docker's list commands give templates structs (``*formatter.imageContext``),
    so ``{{.Nope}}`` fails there, while a map, such as an inspect document,
    gives ``<no value>`` for a missing key.
    """

    def __init__(self, fields: dict, go_type: str) -> None:
        super().__init__(fields)
        self.go_type = go_type


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipeline: list[list[str]]


@dataclass
class _Block:
    kind: str  # "if", "range" or "with"
    pipeline: list[list[str]]
    body: list = field(default_factory=list)
    otherwise: list = field(default_factory=list)


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\||\(|\)|[^\s|()]+')


class Template:
    """A subset of Go's text/template as Docker's ``--format`` uses it.

    Supported: text, ``{{.Field.Sub}}``, ``{{.}}``, pipelines with ``|``,
    ``if``/``else``/``end``, ``range``, ``with``, string and number literals,
    and Docker's functions ``json``, ``join``, ``split``, ``lower``, ``upper``,
    ``title``, ``index``, ``len``, ``truncate``, ``pad``, ``println``.
    Variables (``$x :=``) and parenthesised sub-expressions are rejected.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.nodes = self._parse()

    def _parse(self) -> list:
        root: list = []
        # Each open block with the node list to return to at its {{end}}.
        stack: list[tuple[_Block, list]] = []
        current = root
        position = 0
        text = self.source
        for match in _ACTION.finditer(text):
            literal = text[position:match.start()]
            if match.group(1):
                literal = literal.rstrip()
            if literal:
                current.append(_Text(literal))
            position = match.end()
            if match.group(3):
                # Trim the whitespace that follows a "-}}" marker.
                rest = text[position:]
                position += len(rest) - len(rest.lstrip())
            words = _TOKEN.findall(match.group(2).strip())
            if not words:
                raise TemplateError(self.source, "empty action")
            if words[0] in ("if", "range", "with"):
                block = _Block(words[0], self._pipeline(words[1:]))
                current.append(block)
                stack.append((block, current))
                current = block.body
            elif words[0] == "else":
                if not stack or len(words) > 1:
                    raise TemplateError(self.source, "unexpected {{else}}")
                current = stack[-1][0].otherwise
            elif words[0] == "end":
                if not stack:
                    raise TemplateError(self.source, "unexpected {{end}}")
                current = stack.pop()[1]
            elif words[0] in ("define", "template", "block", "break", "continue") or words[0].startswith("$"):
                raise TemplateError(self.source, f"{words[0]!r} is not supported")
            else:
                current.append(_Action(self._pipeline(words)))
        tail = text[position:]
        if "{{" in tail:
            raise TemplateError(self.source, "unclosed action")
        if tail:
            current.append(_Text(tail))
        if stack:
            raise TemplateError(self.source, f"missing {{{{end}}}} for {{{{{stack[-1][0].kind}}}}}")
        return root

    def _pipeline(self, words: list[str]) -> list[list[str]]:
        if "(" in words or ")" in words:
            raise TemplateError(self.source, "parenthesised expressions are not supported")
        commands: list[list[str]] = [[]]
        for word in words:
            if word == "|":
                commands.append([])
            else:
                commands[-1].append(word)
        if any(not command for command in commands):
            raise TemplateError(self.source, "empty command in pipeline")
        return commands

    def render(self, data: Any) -> str:
        output: list[str] = []
        self._run(self.nodes, data, output)
        return "".join(output)

    def _run(self, nodes: list, dot: Any, output: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                output.append(node.text)
            elif isinstance(node, _Action):
                output.append(go_string(self._evaluate(node.pipeline, dot)))
            elif node.kind == "if":
                branch = node.body if _truthy(self._evaluate(node.pipeline, dot)) else node.otherwise
                self._run(branch, dot, output)
            elif node.kind == "with":
                value = self._evaluate(node.pipeline, dot)
                if _truthy(value):
                    self._run(node.body, value, output)
                else:
                    self._run(node.otherwise, dot, output)
            else:
                value = self._evaluate(node.pipeline, dot)
                items = list(value.values()) if isinstance(value, dict) else list(value or [])
                if not items:
                    self._run(node.otherwise, dot, output)
                for item in items:
                    self._run(node.body, item, output)

    def _evaluate(self, pipeline: list[list[str]], dot: Any) -> Any:
        value: Any = _MISSING
        for command in pipeline:
            head, args = command[0], [self._argument(word, dot) for word in command[1:]]
            if value is not _MISSING:
                args.append(value)
            if head in FUNCTIONS:
                try:
                    value = FUNCTIONS[head](*args)
                except (TypeError, ValueError, KeyError, IndexError) as error:
                    raise TemplateError(self.source, f"error calling {head}: {error}") from error
            elif args:
                raise TemplateError(self.source, f"{head!r} is not a function")
            else:
                value = self._argument(head, dot)
        return value

    def _argument(self, word: str, dot: Any) -> Any:
        if word == ".":
            return dot
        if word.startswith("."):
            value = dot
            for name in word[1:].split("."):
                if isinstance(value, Struct) and name not in value:
                    raise self._execution_error(word, f"can't evaluate field {name} in type {value.go_type}")
                if isinstance(dot, Struct) and isinstance(value, str):
                    # The fields of Docker's list rows are Go strings, which have no fields.
                    raise self._execution_error(word, f"can't evaluate field {name} in type string")
                value = _field(value, name)
            return value
        if word[0] in "\"`":
            return _unquote(word)
        if re.fullmatch(r"-?\d+", word):
            return int(word)
        if word in ("true", "false"):
            return word == "true"
        if word == "nil":
            return None
        if word in FUNCTIONS:
            return FUNCTIONS[word]()
        raise TemplateError(self.source, f'function "{word}" not defined')

    def _execution_error(self, word: str, reason: str) -> TemplateExecutionError:
        """Build Go's error for ``word``: ``template: :LINE:COLUMN: executing "" at <WORD>: REASON``.

        The position is that of the first action that contains ``word``, with
        the line counted from 1 and the column as a byte offset from 0, as Go
        reports it.
        """
        offset = 0
        for match in _ACTION.finditer(self.source):
            for token in _TOKEN.finditer(match.group(2)):
                if token.group() == word:
                    offset = match.start(2) + token.start()
                    break
            else:
                continue
            break
        line = self.source.count("\n", 0, offset) + 1
        column = offset - (self.source.rfind("\n", 0, offset) + 1)
        return TemplateExecutionError(f'template: :{line}:{column}: executing "" at <{word}>: {reason}')


class _Missing:
    def __repr__(self) -> str:
        return "<no value>"


_MISSING = _Missing()


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return value.get(name, _MISSING)
    return getattr(value, name, _MISSING)


def _unquote(word: str) -> str:
    if word.startswith("`"):
        return word[1:-1]
    import json

    return str(json.loads(word))


def _truthy(value: Any) -> bool:
    return value is not _MISSING and bool(value)


def go_string(value: Any) -> str:
    """Format a value as Go's ``fmt`` ``%v`` does for the JSON-like types templates see."""
    if value is _MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{go_string(value[key])}" for key in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_string(item) for item in value) + "]"
    return str(value)


def to_json(value: Any) -> str:
    """Encode compactly and without HTML escaping, as Docker's ``json`` template function does."""
    import json

    if value is _MISSING:
        value = None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _index(container: Any, *keys: Any) -> Any:
    for key in keys:
        container = container[key]
    return container


def _truncate(text: Any, length: int) -> str:
    return str(text)[:length]


def _pad(text: Any, before: int, after: int) -> str:
    return " " * before + str(text) + " " * after


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": to_json,
    "join": lambda items, separator: separator.join(go_string(item) for item in items),
    "split": lambda text, separator: str(text).split(separator),
    "lower": lambda text: str(text).lower(),
    "upper": lambda text: str(text).upper(),
    "title": lambda text: str(text).title(),
    "index": _index,
    "len": len,
    "truncate": _truncate,
    "pad": _pad,
    "println": lambda *values: " ".join(go_string(value) for value in values) + "\n",
}


def render_format(
    format_text: str,
    items: Iterable[Any],
    headers: dict[str, str] | None = None,
    go_type: str | None = None,
) -> str:
    """Render ``--format`` for a list of items, one line each.

    ``json`` prints each item as one JSON object per line. A format that starts
    with ``table`` prints a header row, taken from ``headers`` (field name to
    column title), and aligns the columns at its tab characters. With
    ``go_type``, each item is a ``Struct`` of that type, so a template field
    that an item lacks raises TemplateExecutionError.
    """
    items = [Struct(item, go_type) for item in items] if go_type else list(items)
    if format_text == "json":
        return "".join(to_json(item) + "\n" for item in items)
    as_table = format_text.startswith("table")
    body = format_text[len("table"):].lstrip() if as_table else format_text
    body = body.replace("\\t", "\t").replace("\\n", "\n")
    template = Template(body)
    lines = [template.render(item) for item in items]
    if not as_table:
        return "".join(line + "\n" for line in lines)
    header = _header_row(body, headers or {})
    rows = [header.split("\t")] + [line.split("\t") for line in lines]
    return format_table(rows)


def _header_row(body: str, headers: dict[str, str]) -> str:
    def title(match: re.Match) -> str:
        words = _TOKEN.findall(match.group(2))
        fields = [word for word in words if word.startswith(".")]
        name = fields[-1].rsplit(".", 1)[-1] if fields else ""
        return headers.get(name, name.upper())

    return _ACTION.sub(title, body)


# -- progress ----------------------------------------------------------------

# Statuses that only move a bar: a plain-text log prints the first one per layer and skips the rest.
BAR_STATUSES = frozenset({"Downloading", "Extracting", "Pushing"})


class PlainProgress:
    """Print progress events as ``id: status`` lines, one per change, as Docker does without a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._last: dict[str, str] = {}

    def __call__(self, event: dict) -> None:
        status = event.get("status", "")
        layer = event.get("id")
        if not layer:
            self.stream.write(status + "\n")
        else:
            if status in BAR_STATUSES and self._last.get(layer) == status:
                return
            if status in BAR_STATUSES and event.get("progressDetail"):
                # Docker prints no bar lines without a terminal; the final status follows.
                self._last[layer] = status
                return
            self._last[layer] = status
            self.stream.write(f"{layer}: {status}\n")
        self.stream.flush()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stream.flush()


class BarProgress:
    """Show one rich progress bar per layer; events without a layer ID print above the bars."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        self.console = Console(file=stream)
        self.progress = Progress(
            TextColumn("{task.fields[layer]}:"),
            TextColumn("{task.fields[status]:<18}"),
            BarColumn(),
            DownloadColumn(binary_units=False),
            console=self.console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __call__(self, event: dict) -> None:
        status = event.get("status", "")
        layer = event.get("id")
        if not layer or not re.fullmatch(r"[0-9a-f]{12}", layer):
            self.progress.console.print(f"{layer}: {status}" if layer else status, highlight=False, markup=False)
            return
        task = self.tasks.get(layer)
        if task is None:
            task = self.progress.add_task("", layer=layer, status=status, total=None)
            self.tasks[layer] = task
        detail = event.get("progressDetail") or {}
        update: dict[str, Any] = {"status": status}
        if "total" in detail:
            update["total"] = detail["total"]
        if "current" in detail:
            update["completed"] = detail["current"]
        if status in ("Pull complete", "Already exists", "Pushed", "Layer already exists", "Download complete"):
            total = self.progress.tasks[task].total
            if total:
                update["completed"] = total
        self.progress.update(task, **update)

    def __enter__(self) -> "BarProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.progress.stop()


def progress_printer(stream: TextIO | None = None, quiet: bool = False) -> Any:
    """Return a context manager that also takes progress events: bars on a terminal, lines otherwise."""
    stream = stream or sys.stdout
    if quiet:
        return NullProgress()
    if stream.isatty():
        return BarProgress(stream)
    return PlainProgress(stream)


class NullProgress:
    def __call__(self, event: dict) -> None:
        pass

    def __enter__(self) -> "NullProgress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass
