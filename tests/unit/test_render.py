"""Tests of the CLI's output helpers: sizes, times, tables, templates and plain progress."""

from __future__ import annotations

import io

import pytest

from dockyard.cli import render
from dockyard.errors import InvalidArgument


@pytest.mark.parametrize(
    "size, expected",
    [
        (0, "0B"),
        (999, "999B"),
        (1000, "1kB"),
        (1234, "1.23kB"),
        (4_261_550, "4.26MB"),
        (123_456_789, "123MB"),
        (999_999, "1e+03kB"),
        (5 * 10**12, "5TB"),
    ],
)
def test_human_size(size, expected):
    assert render.human_size(size) == expected


@pytest.mark.parametrize(
    "seconds, expected",
    [
        (0.4, "Less than a second"),
        (1, "1 second"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (59 * 60, "59 minutes"),
        (60 * 60, "About an hour"),
        (2 * 3600, "2 hours"),
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
        (15 * 86400, "2 weeks"),
        (90 * 86400, "3 months"),
        (800 * 86400, "2 years"),
    ],
)
def test_human_duration(seconds, expected):
    assert render.human_duration(seconds) == expected


def test_time_ago_and_unknown():
    assert render.time_ago(1000.0, now=1000.0 + 7200) == "2 hours ago"
    assert render.time_ago(None) == "N/A"


def test_parse_timestamp_with_nanoseconds():
    assert render.parse_timestamp("1970-01-01T00:01:00.500000000Z") == pytest.approx(60.5)
    assert render.parse_timestamp("1970-01-01T01:00:00+01:00") == 0
    assert render.parse_timestamp("yesterday") is None
    assert render.parse_timestamp(None) is None


def test_short_id():
    digest = "sha256:" + "0123456789ab" * 5 + "cdef"
    assert render.short_id(digest) == "0123456789ab"
    assert render.short_id(digest, no_trunc=True) == digest


def test_format_table_pads_like_docker():
    table = render.format_table([["REPOSITORY", "TAG", "SIZE"], ["busybox", "latest", "1.2MB"]])
    assert table.splitlines() == [
        "REPOSITORY   TAG       SIZE",
        "busybox      latest    1.2MB",
    ]


def test_template_fields_and_nesting():
    data = {"Id": "sha256:abc", "Config": {"Env": ["A=1", "B=2"], "Labels": None}}
    assert render.Template("{{.Id}}").render(data) == "sha256:abc"
    assert render.Template("{{.Config.Env}}").render(data) == "[A=1 B=2]"
    assert render.Template("{{.Config.Labels}}").render(data) == "<nil>"
    assert render.Template("{{.Nope}}").render(data) == "<no value>"


def test_template_json_is_compact_and_unescaped():
    data = {"Config": {"Cmd": ["sh", "-c", "a<b"]}}
    assert render.Template("{{json .Config}}").render(data) == '{"Cmd":["sh","-c","a<b"]}'
    assert render.Template("{{.Config | json}}").render(data) == '{"Cmd":["sh","-c","a<b"]}'


def test_template_functions():
    data = {"Tags": ["a:1", "b:2"], "Name": "Busy", "Labels": {"x": "y"}}
    assert render.Template('{{join .Tags ","}}').render(data) == "a:1,b:2"
    assert render.Template("{{lower .Name}}").render(data) == "busy"
    assert render.Template("{{upper .Name}}").render(data) == "BUSY"
    assert render.Template('{{index .Labels "x"}}').render(data) == "y"
    assert render.Template("{{len .Tags}}").render(data) == "2"
    assert render.Template("{{truncate .Name 2}}").render(data) == "Bu"


def test_template_range_if_with():
    data = {"Tags": ["a", "b"], "Empty": [], "Inner": {"X": 1}}
    assert render.Template("{{range .Tags}}[{{.}}]{{end}}").render(data) == "[a][b]"
    assert render.Template("{{range .Empty}}x{{else}}none{{end}}").render(data) == "none"
    assert render.Template("{{if .Empty}}yes{{else}}no{{end}}").render(data) == "no"
    assert render.Template("{{with .Inner}}{{.X}}{{end}}").render(data) == "1"
    assert render.Template("{{if .Tags}}{{range .Tags}}{{.}}{{end}}{{else}}-{{end}}!").render(data) == "ab!"


def test_template_trim_markers():
    assert render.Template("a  {{- .X -}}  b").render({"X": 1}) == "a1b"


@pytest.mark.parametrize("source", ["{{.X", "{{end}}", "{{if .X}}", "{{$x := 1}}", "{{nofunc .X}}", "{{}}"])
def test_template_errors_name_the_template(source):
    with pytest.raises(InvalidArgument, match="invalid --format template"):
        render.Template(source).render({"X": 1})


def test_missing_field_of_struct_row_is_error():
    with pytest.raises(render.TemplateExecutionError) as caught:
        render.render_format("{{.ID}}\n {{.Nope}}", [{"ID": "abc"}], go_type="*formatter.imageContext")
    assert str(caught.value) == (
        'template: :2:3: executing "" at <.Nope>: can\'t evaluate field Nope in type *formatter.imageContext'
    )


def test_field_of_struct_string_is_error():
    with pytest.raises(render.TemplateExecutionError, match="can't evaluate field Sub in type string"):
        render.render_format("{{.ID.Sub}}", [{"ID": "abc"}], go_type="*formatter.imageContext")


def test_missing_map_key_is_no_value():
    assert render.render_format("{{.Nope}}|{{.ID.Sub}}", [{"ID": {}}]) == "<no value>|<no value>\n"


def test_struct_rows_render_as_before():
    rows = [{"ID": "abc", "Tag": "v1"}]
    assert render.render_format("{{.ID}}:{{.Tag}}", rows, go_type="T") == "abc:v1\n"
    assert render.render_format("json", rows, go_type="T") == '{"ID":"abc","Tag":"v1"}\n'


def test_rfc3339_time_in_utc(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        assert render.rfc3339_time(1_700_000_000) == "2023-11-14T22:13:20Z"
        assert render.rfc3339_time(None) == ""
    finally:
        monkeypatch.undo()
        time.tzset()


def test_rfc3339_time_with_offset(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert render.rfc3339_time(1_700_000_000) == "2023-11-15T03:43:20+05:30"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_render_format_table_with_headers():
    items = [{"Repository": "busybox", "Tag": "latest"}]
    output = render.render_format("table {{.Repository}}\\t{{.Tag}}", items, headers={"Repository": "REPOSITORY"})
    assert output.splitlines() == ["REPOSITORY   TAG", "busybox      latest"]


def test_render_format_json_lines():
    output = render.render_format("json", [{"A": 1}, {"A": 2}])
    assert output == '{"A":1}\n{"A":2}\n'


def test_render_format_plain_lines():
    items = [{"Repository": "a", "Tag": "1"}, {"Repository": "b", "Tag": "2"}]
    assert render.render_format("{{.Repository}}:{{.Tag}}", items) == "a:1\nb:2\n"


def test_plain_progress_prints_each_change_once():
    out = io.StringIO()
    progress = render.PlainProgress(out)
    progress({"status": "Pulling from library/busybox", "id": "latest"})
    progress({"status": "Pulling fs layer", "id": "aaaaaaaaaaaa"})
    for current in (10, 20, 30):
        progress({"status": "Downloading", "id": "aaaaaaaaaaaa", "progressDetail": {"current": current, "total": 30}})
    progress({"status": "Download complete", "id": "aaaaaaaaaaaa"})
    progress({"status": "Pull complete", "id": "aaaaaaaaaaaa"})
    progress({"status": "Digest: sha256:1234"})
    assert out.getvalue().splitlines() == [
        "latest: Pulling from library/busybox",
        "aaaaaaaaaaaa: Pulling fs layer",
        "aaaaaaaaaaaa: Download complete",
        "aaaaaaaaaaaa: Pull complete",
        "Digest: sha256:1234",
    ]


def test_bar_progress_accepts_events():
    out = io.StringIO()
    with render.BarProgress(out) as progress:
        progress({"status": "Pulling from library/busybox", "id": "latest"})
        progress({"status": "Downloading", "id": "aaaaaaaaaaaa", "progressDetail": {"current": 5, "total": 10}})
        progress({"status": "Pull complete", "id": "aaaaaaaaaaaa"})
    assert "Pulling from library/busybox" in out.getvalue()
    assert "aaaaaaaaaaaa" in out.getvalue()
