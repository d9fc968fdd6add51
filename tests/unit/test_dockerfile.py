"""The Dockerfile parser and variable substitution, with hand-written cases and Hypothesis properties."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dockyard.build import dockerfile as dockerfiles
from dockyard.build.metadata import parse_duration
from dockyard.build.dockerfile import expand, expand_words, parse, parse_key_values, split_words
from dockyard.errors import BuildError


# -- parsing ------------------------------------------------------------------------------------


def test_parse_instructions_and_comments():
    result = parse("# a comment\nFROM busybox AS base\n\n  # indented comment\nrun echo hi\nCMD [\"sh\"]\n")
    assert [(i.keyword, i.arguments, i.line) for i in result.instructions] == [
        ("FROM", "busybox AS base", 2),
        ("RUN", "echo hi", 5),
        ("CMD", '["sh"]', 6),
    ]


def test_parse_continuation_skips_comment_lines():
    result = parse("RUN echo one \\\n# a comment inside\n\n    two \\\n    three\n")
    assert result.instructions[0].arguments == "echo one two three"


def test_parse_escape_directive_backtick():
    result = parse("# escape=`\nFROM busybox\nRUN echo a `\n  b\nCOPY c:\\dir\\ d\n")
    assert result.escape == "`"
    assert result.instructions[1].arguments == "echo a b"
    assert result.instructions[2].arguments == "c:\\dir\\ d"


def test_directive_after_instruction_is_comment():
    result = parse("FROM busybox\n# escape=`\nRUN echo a \\\n b\n")
    assert result.escape == "\\"
    assert result.instructions[1].arguments == "echo a b"


def test_unknown_directive_ends_directives():
    result = parse("# unknown=x\n# escape=`\nFROM busybox\n")
    assert result.escape == "\\"


def test_duplicate_directive_rejected():
    with pytest.raises(BuildError, match="only one escape parser directive"):
        parse("# escape=`\n# escape=\\\nFROM busybox\n")


def test_unknown_instruction_names_line():
    with pytest.raises(BuildError, match="line 2: unknown instruction: FORM"):
        parse("FROM busybox\nFORM x\n")


def test_flags_split_off():
    instruction = parse("COPY --from=build --chown=1:2 a b\n").instructions[0]
    assert instruction.flags == {"from": "build", "chown": "1:2"}
    assert instruction.arguments == "a b"


def test_heredocs():
    text = "RUN <<EOF\necho one\necho two\nEOF\nCOPY <<-\"A\" <<B /dir/\n\tfirst\n\tA\nsecond\nB\nCMD [\"sh\"]\n"
    run, copy, cmd = parse(text).instructions
    assert run.heredocs == (dockerfiles.Heredoc("EOF", "echo one\necho two\n"),)
    assert copy.heredocs == (dockerfiles.Heredoc("A", "first\n", expand=False), dockerfiles.Heredoc("B", "second\n"))
    assert cmd.keyword == "CMD"


def test_unterminated_heredoc_rejected():
    with pytest.raises(BuildError, match="no terminating line"):
        parse("RUN <<EOF\necho\n")


def test_json_form():
    instruction = parse('CMD ["echo", "hi there"]\n').instructions[0]
    assert instruction.json_form() == ["echo", "hi there"]
    assert parse("CMD [not json\n").instructions[0].json_form() is None


# -- substitution -------------------------------------------------------------------------------


@pytest.mark.parametrize("word, expected", [
    ("$A", "a"),
    ("${A}x", "ax"),
    ("${MISSING:-fallback}", "fallback"),
    ("${EMPTY:-fallback}", "fallback"),
    ("${EMPTY-fallback}", ""),
    ("${A:+alt}", "alt"),
    ("${MISSING:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("'$A'", "$A"),
    ('"$A b"', "a b"),
    ("\\$A", "$A"),
    ('"\\$A"', "$A"),
    ("$", "$"),
    ("a$-b", "a$-b"),
    ("${MISSING:-${A}}", "a"),
])
def test_expand_cases(word, expected):
    assert expand(word, {"A": "a", "EMPTY": ""}) == expected


def test_expand_heredoc_keeps_quotes():
    body = 'echo "hello ${NAME}" \'$NAME\' \\$NAME C:\\dir\n'
    assert dockerfiles.expand_heredoc(body, {"NAME": "world"}) == "echo \"hello world\" 'world' $NAME C:\\dir\n"


def test_expand_required_variable():
    with pytest.raises(BuildError, match="NEEDED: set it"):
        expand("${NEEDED:?set it}", {})


@pytest.mark.parametrize("word", ["${A", "'open", '"open', "${A:x}", "${}"])
def test_expand_malformed(word):
    with pytest.raises(BuildError):
        expand(word, {"A": "a"})


def test_key_values_forms():
    assert parse_key_values('A=1 B="two words" C=three\\ words', "ENV") == [
        ("A", "1"), ("B", '"two words"'), ("C", "three\\ words"),
    ]
    assert parse_key_values("KEY value with spaces", "ENV") == [("KEY", "value with spaces")]
    with pytest.raises(BuildError):
        parse_key_values("KEY", "ENV")


def test_expand_words_drops_empty_variables():
    assert expand_words("a $MISSING 'b c' \"$A\"", {"A": "x"}) == ["a", "b c", "x"]


def test_parse_duration():
    assert parse_duration("1m30s", "x") == 90 * 10**9
    with pytest.raises(BuildError):
        parse_duration("10", "x")


# -- properties ---------------------------------------------------------------------------------

PLAIN = st.text(alphabet=string.ascii_letters + string.digits + "/._-:@+,=", min_size=1, max_size=40)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
VALUES = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(PLAIN)
def test_plain_text_unchanged(text):
    assert expand(text, {"UNUSED": "x"}) == text


@given(NAMES, VALUES)
def test_variable_forms_substitute_value(name, value):
    env = {name: value}
    assert expand(f"${{{name}}}", env) == value
    assert expand(f"${name}", env) == value
    assert expand(f"${{{name}:-default}}", env) == (value or "default")
    assert expand(f"${{{name}-default}}", env) == value
    assert expand(f"${{{name}:+alt}}", env) == ("alt" if value else "")


@given(NAMES, PLAIN)
def test_unset_variable_takes_default(name, default):
    assert expand(f"${{{name}:-{default}}}", {}) == expand(default, {})


@given(VALUES)
def test_single_quotes_keep_everything(text):
    quoted = "'" + text.replace("'", "") + "'"
    assert expand(quoted, {"A": "a"}) == text.replace("'", "")


@given(st.lists(PLAIN, min_size=1, max_size=6))
def test_split_words_roundtrip(words):
    assert split_words(" ".join(words)) == words


@given(st.lists(st.tuples(st.sampled_from(["RUN", "CMD", "ENV", "LABEL", "EXPOSE"]), PLAIN), min_size=1, max_size=8))
def test_parse_keeps_instruction_order(pairs):
    assume(not any(argument.startswith("--") for _, argument in pairs))
    text = "FROM base\n" + "".join(f"{keyword} {argument}\n" for keyword, argument in pairs)
    parsed = parse(text).instructions[1:]
    assert [(i.keyword, i.arguments) for i in parsed] == pairs


@given(st.lists(PLAIN, min_size=2, max_size=5).filter(lambda parts: not parts[0].startswith("--")))
def test_continuation_joins_parts(parts):
    # A first word starting with "--" is an instruction flag, which split_flags handles.
    text = "RUN " + " \\\n".join(parts) + "\n"
    assert parse(text).instructions[0].arguments == " ".join(parts)


@given(st.lists(st.text(alphabet=string.printable.replace("\r", "").replace("\x0b", "").replace("\x0c", ""), max_size=20), max_size=5))
def test_json_form_roundtrip(items):
    text = "CMD " + json.dumps(items) + "\n"
    instruction = parse(text).instructions[0]
    assert instruction.json_form() == items


def test_double_dash_ends_instruction_flags():
    from dockyard.build.dockerfile import split_flags

    assert split_flags("--mount=type=cache -- --not-a-flag", 1) == ({"mount": "type=cache"}, "--not-a-flag")
