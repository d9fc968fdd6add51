"""Query parsing of ``POST /build`` and the filters of the event stream, without a server or an engine."""

from __future__ import annotations

import io
import json
import urllib.parse

import pytest

from dockyard.api import build
from dockyard.api.errors import ApiError
from dockyard.api.server import Request, parse_target
from dockyard.engine import events
from dockyard.errors import InvalidArgument


def _request(query: dict[str, str | list[str]]) -> Request:
    target = "/build?" + urllib.parse.urlencode(query, doseq=True)
    path, parsed = parse_target(target)
    return Request("POST", target, path, (1, 50), parsed, {}, io.BytesIO())


def test_build_options_from_query() -> None:
    request = _request({
        "t": ["one/app:1", "two/app:2"], "buildargs": json.dumps({"A": "1", "UNSET": None}),
        "labels": json.dumps({"stage": "test"}), "target": "final", "nocache": "1", "pull": "true", "rm": "1",
    })
    options = build.options_from_query(request)
    assert options.tags == ["one/app:1", "two/app:2"]
    assert options.build_args == {"A": "1"}
    assert options.labels == {"stage": "test"}
    assert options.target == "final"
    assert options.no_cache is True
    assert options.pull is True


def test_build_options_defaults() -> None:
    options = build.options_from_query(_request({}))
    assert options.tags == []
    assert options.build_args == {}
    assert options.target is None
    assert options.no_cache is False


def test_build_rejects_invalid_buildargs() -> None:
    with pytest.raises(InvalidArgument, match="invalid buildargs"):
        build.options_from_query(_request({"buildargs": "[1, 2]"}))


@pytest.mark.parametrize("query, feature", [
    ({"remote": "https://example.invalid/context.tar"}, "remote"),
    ({"extrahosts": "db:10.0.0.2"}, "extrahosts"),
    ({"version": "2"}, "BuildKit"),
])
def test_build_rejects_unsupported_parameters(query: dict[str, str], feature: str) -> None:
    with pytest.raises(ApiError, match=feature) as raised:
        build._check_supported(_request(query))
    assert raised.value.status == 501


def test_build_accepts_default_values() -> None:
    build._check_supported(_request({"remote": "", "cachefrom": "[]", "version": "1", "squash": "0"}))


def _summary(state: str, labels: dict[str, str], status: str = "") -> dict:
    return {"Id": "c0ffee" * 10 + "abcd", "Names": ["/proj_web_1"], "Image": "busybox", "State": state,
            "Status": status, "Labels": labels}


def test_event_carries_labels_as_attributes() -> None:
    (created, started) = events._transition(None, _summary("running", {"com.docker.compose.project": "proj"}))
    assert created["Action"] == "create"
    assert started["Action"] == "start"
    assert started["Actor"]["Attributes"]["com.docker.compose.project"] == "proj"
    assert started["Actor"]["Attributes"]["name"] == "proj_web_1"


def test_event_die_has_exit_code() -> None:
    (died,) = events._transition(_summary("running", {}), _summary("exited", {}, "Exited (3) 1 second ago"))
    assert died["Action"] == "die"
    assert died["Actor"]["Attributes"]["exitCode"] == "3"


@pytest.mark.parametrize("filters, expected", [
    ({"label": ["com.docker.compose.project=proj"]}, True),
    ({"label": ["com.docker.compose.project=other"]}, False),
    ({"label": ["com.docker.compose.project"]}, True),
    ({"label": ["com.docker.compose.project=proj", "com.docker.compose.service=web"]}, True),
    ({"label": ["com.docker.compose.project=proj", "com.docker.compose.service=db"]}, False),
    ({"label": ["missing"]}, False),
    ({"image": ["busybox"]}, True),
    ({"image": ["alpine"]}, False),
    ({"container": ["proj_web_1"]}, True),
    ({"type": ["network"]}, False),
])
def test_event_filters(filters: dict[str, list[str]], expected: bool) -> None:
    labels = {"com.docker.compose.project": "proj", "com.docker.compose.service": "web"}
    (_, started) = events._transition(None, _summary("running", labels))
    assert events._matches(started, filters) is expected
