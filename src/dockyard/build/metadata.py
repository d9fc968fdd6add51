"""Instructions that change only the image config: ENV, LABEL, CMD, ENTRYPOINT, USER, EXPOSE, VOLUME,
STOPSIGNAL, SHELL, HEALTHCHECK, ONBUILD and MAINTAINER.

``plan`` turns one instruction into a ``Change``: the text of its history
entry (``ENV A=b``, which also keys the build cache) and a function that
applies it to an image config document.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from dockyard.build import dockerfile as dockerfiles
from dockyard.build.dockerfile import Instruction
from dockyard.errors import BuildError

DEFAULT_SHELL = ["/bin/sh", "-c"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_HEALTHCHECK_DURATIONS = {
    "interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod", "start-interval": "StartInterval",
}


@dataclass(frozen=True)
class Change:
    text: str                                   # the instruction as the history shows it, after substitution
    apply: Callable[[dict[str, Any]], None]      # changes an image config document in place


def plan(instruction: Instruction, variables: Mapping[str, str], escape: str, config: Mapping[str, Any]) -> Change:
    """Return the change a metadata instruction makes; ``config`` is the current ``config`` object (for SHELL)."""
    keyword = instruction.keyword
    planner = _PLANNERS.get(keyword)
    if planner is None:
        raise BuildError(f"Dockerfile line {instruction.line}: {keyword} is not supported")
    return planner(instruction, variables, escape, config)


def also_clear_cmd(change: Change) -> Change:
    """Return ``change`` extended to clear ``Cmd`` as well."""
    def apply(document: dict[str, Any]) -> None:
        change.apply(document)
        document["config"]["Cmd"] = None

    return Change(change.text, apply)


def _in_config(update: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    """Wrap a change of the ``config`` object as a change of the whole document."""
    def apply(document: dict[str, Any]) -> None:
        update(document.setdefault("config", {}))

    return apply


def _env_or_label(instruction: Instruction, variables: Mapping[str, str], escape: str, config: Mapping[str, Any]) -> Change:
    keyword = instruction.keyword
    # Every value is expanded with the variables from before the instruction, as Docker does.
    pairs = [
        (dockerfiles.expand(key, variables, escape), dockerfiles.expand(value, variables, escape))
        for key, value in dockerfiles.parse_key_values(instruction.arguments, keyword, escape)
    ]
    text = f"{keyword} " + " ".join(f"{key}={value}" for key, value in pairs)

    def update(target: dict[str, Any]) -> None:
        if keyword == "LABEL":
            target["Labels"] = {**(target.get("Labels") or {}), **dict(pairs)}
            return
        env = list(target.get("Env") or [])
        for key, value in pairs:
            # A variable set again keeps its place in the list.
            names = [entry.partition("=")[0] for entry in env]
            if key in names:
                env[names.index(key)] = f"{key}={value}"
            else:
                env.append(f"{key}={value}")
        target["Env"] = env

    return Change(text, _in_config(update))


def command(instruction: Instruction, config: Mapping[str, Any]) -> list[str]:
    """Return the exec form of a CMD, ENTRYPOINT or RUN: its JSON array, or the shell form run by ``Shell``."""
    json_form = instruction.json_form()
    if json_form is not None:
        return json_form
    shell = config.get("Shell") or DEFAULT_SHELL
    return [*shell, instruction.arguments]


def _cmd_or_entrypoint(instruction: Instruction, variables: Mapping[str, str], escape: str,
                       config: Mapping[str, Any]) -> Change:
    words = command(instruction, config)
    key = "Cmd" if instruction.keyword == "CMD" else "Entrypoint"
    # Docker's history shows the list as Go prints it: ["sh" "-c" "echo"].
    text = f"{instruction.keyword} [" + " ".join(json.dumps(word) for word in words) + "]"
    return Change(text, _in_config(lambda target: target.__setitem__(key, words)))


def _user(instruction: Instruction, variables: Mapping[str, str], escape: str, config: Mapping[str, Any]) -> Change:
    user = dockerfiles.expand(instruction.arguments.strip(), variables, escape)
    if not user:
        raise BuildError(f"Dockerfile line {instruction.line}: USER requires exactly one argument")
    return Change(f"USER {user}", _in_config(lambda target: target.__setitem__("User", user)))


def _words(instruction: Instruction, variables: Mapping[str, str], escape: str) -> list[str]:
    json_form = instruction.json_form()
    if json_form is not None:
        return [dockerfiles.expand(word, variables, escape) for word in json_form]
    return dockerfiles.expand_words(instruction.arguments, variables, escape)


def _expose(instruction: Instruction, variables: Mapping[str, str], escape: str, config: Mapping[str, Any]) -> Change:
    ports = []
    for word in _words(instruction, variables, escape):
        port, _, protocol = word.partition("/")
        if not port or not all(part.isdigit() for part in port.split("-")):
            raise BuildError(f"Dockerfile line {instruction.line}: invalid containerPort: {word}")
        ports.append(f"{port}/{(protocol or 'tcp').lower()}")

    def update(target: dict[str, Any]) -> None:
        target["ExposedPorts"] = {**(target.get("ExposedPorts") or {}), **{port: {} for port in ports}}

    return Change("EXPOSE " + " ".join(ports), _in_config(update))


def _volume(instruction: Instruction, variables: Mapping[str, str], escape: str, config: Mapping[str, Any]) -> Change:
    volumes = _words(instruction, variables, escape)
    if not volumes or not all(volumes):
        raise BuildError(f"Dockerfile line {instruction.line}: VOLUME specified can not be an empty string")

    def update(target: dict[str, Any]) -> None:
        target["Volumes"] = {**(target.get("Volumes") or {}), **{volume: {} for volume in volumes}}

    return Change("VOLUME [" + " ".join(volumes) + "]", _in_config(update))


def _stopsignal(instruction: Instruction, variables: Mapping[str, str], escape: str, config: Mapping[str, Any]) -> Change:
    signal = dockerfiles.expand(instruction.arguments.strip(), variables, escape)
    if not signal:
        raise BuildError(f"Dockerfile line {instruction.line}: STOPSIGNAL requires exactly one argument")
    return Change(f"STOPSIGNAL {signal}", _in_config(lambda target: target.__setitem__("StopSignal", signal)))


def _shell(instruction: Instruction, variables: Mapping[str, str], escape: str, config: Mapping[str, Any]) -> Change:
    shell = instruction.json_form()
    if not shell:
        raise BuildError(f"Dockerfile line {instruction.line}: SHELL requires the arguments to be in JSON form")
    return Change("SHELL [" + " ".join(shell) + "]", _in_config(lambda target: target.__setitem__("Shell", shell)))


def healthcheck(instruction: Instruction) -> dict[str, Any]:
    """Return the ``Healthcheck`` object of a HEALTHCHECK instruction; durations in nanoseconds."""
    kind, _, rest = instruction.arguments.strip().partition(" ")
    if kind.upper() == "NONE":
        if instruction.flags or rest.strip():
            raise BuildError(f"Dockerfile line {instruction.line}: HEALTHCHECK NONE takes no arguments")
        return {"Test": ["NONE"]}
    if kind.upper() != "CMD":
        raise BuildError(f"Dockerfile line {instruction.line}: HEALTHCHECK needs CMD or NONE, not {kind!r}")
    words = dockerfiles.json_array(rest)
    result: dict[str, Any] = {"Test": ["CMD", *words] if words is not None else ["CMD-SHELL", rest.strip()]}
    for flag, key in _HEALTHCHECK_DURATIONS.items():
        if flag in instruction.flags:
            result[key] = parse_duration(instruction.flags[flag], f"HEALTHCHECK --{flag}")
    if "retries" in instruction.flags:
        try:
            result["Retries"] = int(instruction.flags["retries"])
        except ValueError:
            raise BuildError(f"HEALTHCHECK --retries={instruction.flags['retries']}: invalid number") from None
    return result


def _healthcheck(instruction: Instruction, variables: Mapping[str, str], escape: str, config: Mapping[str, Any]) -> Change:
    check = healthcheck(instruction)
    return Change(f"HEALTHCHECK &{json.dumps(check)}", _in_config(lambda target: target.__setitem__("Healthcheck", check)))


def _onbuild(instruction: Instruction, variables: Mapping[str, str], escape: str, config: Mapping[str, Any]) -> Change:
    trigger = instruction.arguments.strip()
    word = trigger.split(None, 1)[0].upper() if trigger else ""
    if not word or word in ("ONBUILD", "FROM", "MAINTAINER"):
        raise BuildError(f"Dockerfile line {instruction.line}: {word or 'an empty trigger'} isn't allowed as an ONBUILD trigger")

    def update(target: dict[str, Any]) -> None:
        target["OnBuild"] = [*(target.get("OnBuild") or []), trigger]

    return Change(f"ONBUILD {trigger}", _in_config(update))


def _maintainer(instruction: Instruction, variables: Mapping[str, str], escape: str, config: Mapping[str, Any]) -> Change:
    author = dockerfiles.expand(instruction.arguments.strip(), variables, escape)
    return Change(f"MAINTAINER {author}", lambda document: document.__setitem__("author", author))


_PLANNERS: dict[str, Callable[[Instruction, Mapping[str, str], str, Mapping[str, Any]], Change]] = {
    "ENV": _env_or_label,
    "LABEL": _env_or_label,
    "CMD": _cmd_or_entrypoint,
    "ENTRYPOINT": _cmd_or_entrypoint,
    "USER": _user,
    "EXPOSE": _expose,
    "VOLUME": _volume,
    "STOPSIGNAL": _stopsignal,
    "SHELL": _shell,
    "HEALTHCHECK": _healthcheck,
    "ONBUILD": _onbuild,
    "MAINTAINER": _maintainer,
}


def parse_duration(text: str, what: str) -> int:
    """Parse a Go duration such as ``30s`` or ``1m30s``; returns nanoseconds."""
    position = 0
    total = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += int(float(match.group(1)) * _DURATION_UNITS[match.group(2)])
        position = match.end()
    if not text or position != len(text):
        raise BuildError(f"{what}={text}: invalid duration: use a number with a unit, such as 30s or 1m30s")
    return total
