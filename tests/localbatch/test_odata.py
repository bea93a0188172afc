"""Tests for localbatch.odata: $filter compilation and $select projection."""

import pytest

from localbatch.odata import (
    BOOLEAN,
    DATETIME,
    ENUM,
    INTEGER,
    STRING,
    ODataError,
    compile_filter,
    lower_bound,
    parse_datetime,
    parse_select,
    project,
)

TASK_FIELDS = {
    "id": STRING,
    "displayName": STRING,
    "state": ENUM,
    "creationTime": DATETIME,
    "stateTransitionTime": DATETIME,
    "executionInfo/exitCode": INTEGER,
    "executionInfo/result": ENUM,
    "executionInfo/startTime": DATETIME,
    "nodeInfo/poolId": STRING,
}


def make_task(**overrides):
    task = {
        "id": "task-1",
        "url": "https://account.region.batch.azure.com/jobs/j1/tasks/task-1",
        "displayName": "First Task",
        "state": "completed",
        "creationTime": "2026-11-24T17:00:00.123456Z",
        "stateTransitionTime": "2026-11-24T17:05:00.1234567Z",
        "executionInfo": {
            "exitCode": 0,
            "result": "success",
            "startTime": "2026-11-24T17:01:00Z",
            "retryCount": 0,
        },
        "nodeInfo": {"poolId": "Pool-A", "nodeId": "n1"},
    }
    task.update(overrides)
    return task


def matches(filter_text, entity=None, fields=TASK_FIELDS):
    return compile_filter(filter_text, fields)(make_task() if entity is None else entity)


# ---------------------------------------------------------------------------------------------
# Empty filters


@pytest.mark.parametrize("text", [None, "", "   ", "\t\n"])
def test_blank_filter_matches_everything(text):
    predicate = compile_filter(text, TASK_FIELDS)
    assert predicate({}) is True
    assert predicate(make_task()) is True


# ---------------------------------------------------------------------------------------------
# Strings and enums


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id eq 'task-1'", True),
        ("id eq 'task-2'", False),
        ("id ne 'task-2'", True),
        ("id ne 'task-1'", False),
        ("id gt 'task-0'", True),
        ("id gt 'task-1'", False),
        ("id ge 'task-1'", True),
        ("id lt 'task-2'", True),
        ("id lt 'task-1'", False),
        ("id le 'task-1'", True),
        ("id le 'task-0'", False),
        ("startswith(id, 'task-')", True),
        ("startswith(id,'task-1')", True),
        ("startswith(id,'task-2')", False),
        ("startswith(id,'')", True),
    ],
)
def test_string_operators(text, expected):
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id eq 'TASK-1'", True),
        ("displayName eq 'first task'", True),
        ("displayName gt 'FIRST'", True),
        ("displayName lt 'first'", False),
        ("startswith(displayName, 'FIRST')", True),
        ("state eq 'Completed'", True),
        ("state eq 'COMPLETED'", True),
        ("state ne 'Completed'", False),
        ("startswith(state, 'COMP')", True),
        ("nodeInfo/poolId eq 'pool-a'", True),
    ],
)
def test_string_and_enum_comparisons_ignore_case(text, expected):
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("state eq 'completed'", True),
        ("state eq 'active'", False),
        ("state ne 'active'", True),
        ("state ne 'completed'", False),
        ("startswith(state,'comp')", True),
        ("startswith(state,'act')", False),
    ],
)
def test_enum_operators(text, expected):
    assert matches(text) is expected


def test_doubled_quote_is_an_escaped_quote():
    task = make_task(displayName="it's done")
    assert matches("displayName eq 'it''s done'", task) is True
    assert matches("displayName eq 'its done'", task) is False
    assert matches("startswith(displayName, 'it''')", task) is True
    assert matches("displayName eq ''''", make_task(displayName="'")) is True
    assert matches("displayName eq ''", make_task(displayName="")) is True


def test_literals_keep_spaces_and_operator_words():
    task = make_task(displayName="a and b or c eq d")
    assert matches("displayName eq 'a and b or c eq d'", task) is True


def test_string_with_slash_prefix():
    fields = {"name": STRING}
    predicate = compile_filter("startswith(name,'wd/')", fields)
    assert predicate({"name": "wd/output.txt"}) is True
    assert predicate({"name": "stdout.txt"}) is False


def test_non_string_entity_value_in_string_field_is_compared_as_text():
    fields = {"id": STRING}
    assert compile_filter("id eq '42'", fields)({"id": 42}) is True
    assert compile_filter("startswith(id, '4')", fields)({"id": 42}) is True


# ---------------------------------------------------------------------------------------------
# Integers


@pytest.mark.parametrize(
    ("text", "exit_code", "expected"),
    [
        ("executionInfo/exitCode eq 0", 0, True),
        ("executionInfo/exitCode eq 0", 1, False),
        ("executionInfo/exitCode ne 0", 0, False),
        ("executionInfo/exitCode ne 0", 3, True),
        ("executionInfo/exitCode gt 2", 3, True),
        ("executionInfo/exitCode gt 3", 3, False),
        ("executionInfo/exitCode ge 3", 3, True),
        ("executionInfo/exitCode ge 4", 3, False),
        ("executionInfo/exitCode lt 4", 3, True),
        ("executionInfo/exitCode lt 3", 3, False),
        ("executionInfo/exitCode le 3", 3, True),
        ("executionInfo/exitCode le 2", 3, False),
        ("executionInfo/exitCode eq -1", -1, True),
        ("executionInfo/exitCode gt -5", -1, True),
        ("executionInfo/exitCode lt -5", -1, False),
    ],
)
def test_integer_operators(text, exit_code, expected):
    task = make_task(executionInfo={"exitCode": exit_code})
    assert matches(text, task) is expected


def test_integer_field_accepts_numeric_string_entity_values():
    task = make_task(executionInfo={"exitCode": "7"})
    assert matches("executionInfo/exitCode eq 7", task) is True
    assert matches("executionInfo/exitCode gt 10", task) is False


def test_unparseable_integer_entity_value_only_satisfies_ne():
    task = make_task(executionInfo={"exitCode": "seven"})
    assert matches("executionInfo/exitCode eq 7", task) is False
    assert matches("executionInfo/exitCode gt 0", task) is False
    assert matches("executionInfo/exitCode ne 7", task) is True


# ---------------------------------------------------------------------------------------------
# Datetimes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("creationTime eq datetime'2026-11-24T17:00:00.123456Z'", True),
        ("creationTime eq datetime'2026-11-24T17:00:00.123457Z'", False),
        ("creationTime ne datetime'2026-11-24T17:00:00.123456Z'", False),
        ("creationTime gt datetime'2026-11-24T17:00:00.123455Z'", True),
        ("creationTime gt datetime'2026-11-24T17:00:00.123456Z'", False),
        ("creationTime ge datetime'2026-11-24T17:00:00.123456Z'", True),
        ("creationTime ge datetime'2026-11-24T17:00:00.123457Z'", False),
        ("creationTime lt datetime'2026-11-24T17:00:00.123457Z'", True),
        ("creationTime lt datetime'2026-11-24T17:00:00.123456Z'", False),
        ("creationTime le datetime'2026-11-24T17:00:00.123456Z'", True),
        ("creationTime le datetime'2026-11-24T17:00:00.123455Z'", False),
    ],
)
def test_datetime_operators(text, expected):
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Seven fractional digits on both sides.
        ("stateTransitionTime ge datetime'2026-11-24T17:05:00.1234567Z'", True),
        ("stateTransitionTime eq datetime'2026-11-24T17:05:00.1234567Z'", True),
        ("stateTransitionTime gt datetime'2026-11-24T17:05:00.1234580Z'", False),
        ("stateTransitionTime lt datetime'2026-11-24T17:05:00.1234580Z'", True),
        # Seven digits against an entity value with six.
        ("creationTime lt datetime'2026-11-24T17:00:00.1234580Z'", True),
        ("creationTime gt datetime'2026-11-24T17:00:00.1234550Z'", True),
        # Sub-second precision matters: same second, different fraction.
        ("creationTime gt datetime'2026-11-24T17:00:00Z'", True),
        ("creationTime lt datetime'2026-11-24T17:00:00.2Z'", True),
    ],
)
def test_datetime_seven_fractional_digits(text, expected):
    assert matches(text) is expected


@pytest.mark.parametrize(
    "literal",
    [
        "datetime'2026-11-24T17:00:00.123456Z'",
        "DateTime'2026-11-24T17:00:00.123456Z'",
        "DATETIME'2026-11-24T17:00:00.123456Z'",
        "'2026-11-24T17:00:00.123456Z'",
        "'2026-11-24T18:00:00.123456+01:00'",
    ],
)
def test_datetime_literal_forms(literal):
    assert matches(f"creationTime eq {literal}") is True


def test_datetime_entity_values_with_various_precision():
    predicate = compile_filter("creationTime ge datetime'2026-11-24T17:00:00.5Z'", TASK_FIELDS)
    assert predicate({"creationTime": "2026-11-24T17:00:00Z"}) is False
    assert predicate({"creationTime": "2026-11-24T17:00:00.4999999Z"}) is False
    assert predicate({"creationTime": "2026-11-24T17:00:00.5Z"}) is True
    assert predicate({"creationTime": "2026-11-24T17:00:01Z"}) is True
    assert predicate({"creationTime": "2026-11-24T17:00:00.50000Z"}) is True


def test_lowercase_t_and_z_in_datetimes():
    predicate = compile_filter("creationTime eq '2026-11-24t17:00:00.1234567z'", TASK_FIELDS)
    assert predicate({"creationTime": "2026-11-24t17:00:00.123456z"}) is True
    assert predicate({"creationTime": "2026-11-24T17:00:00.123457Z"}) is False


def test_offsetless_datetimes_are_treated_as_utc():
    predicate = compile_filter("creationTime eq '2026-11-24T17:00:00'", TASK_FIELDS)
    assert predicate({"creationTime": "2026-11-24T17:00:00Z"}) is True


def test_unparseable_datetime_entity_value_only_satisfies_ne():
    task = make_task(creationTime="not a date")
    assert matches("creationTime gt datetime'2000-01-01T00:00:00Z'", task) is False
    assert matches("creationTime ne datetime'2000-01-01T00:00:00Z'", task) is True


# ---------------------------------------------------------------------------------------------
# Booleans


def test_boolean_fields():
    fields = {"enableAutoScale": BOOLEAN}
    assert compile_filter("enableAutoScale eq true", fields)({"enableAutoScale": True}) is True
    assert compile_filter("enableAutoScale eq TRUE", fields)({"enableAutoScale": False}) is False
    assert compile_filter("enableAutoScale ne true", fields)({"enableAutoScale": False}) is True
    assert compile_filter("enableAutoScale eq false", fields)({"enableAutoScale": "false"}) is True


# ---------------------------------------------------------------------------------------------
# Missing and null values


@pytest.mark.parametrize("missing", [{}, {"executionInfo": None}, {"executionInfo": {}},
                                     {"executionInfo": {"exitCode": None}},
                                     {"executionInfo": "not-a-dict"}])
def test_missing_values(missing):
    task = make_task()
    del task["executionInfo"]
    task.update(missing)
    for op in ("eq", "gt", "ge", "lt", "le"):
        assert matches(f"executionInfo/exitCode {op} 0", task) is False, op
    assert matches("executionInfo/exitCode ne 0", task) is True
    assert matches("executionInfo/exitCode eq null", task) is True
    assert matches("executionInfo/exitCode ne null", task) is False
    assert matches("startswith(executionInfo/result, 's')", task) is False
    assert matches("executionInfo/result ne 'success'", task) is True


def test_null_comparisons_on_present_values():
    assert matches("executionInfo/exitCode eq null") is False
    assert matches("executionInfo/exitCode ne null") is True
    assert matches("displayName eq NULL") is False
    assert matches("creationTime ne null") is True


def test_missing_top_level_string():
    task = make_task()
    del task["displayName"]
    assert matches("displayName eq 'x'", task) is False
    assert matches("displayName ne 'x'", task) is True
    assert matches("displayName eq null", task) is True


def test_three_level_path():
    fields = {"a/b/c": INTEGER}
    predicate = compile_filter("a/b/c eq 5", fields)
    assert predicate({"a": {"b": {"c": 5}}}) is True
    assert predicate({"a": {"b": {"c": 6}}}) is False
    assert predicate({"a": {"b": None}}) is False
    assert predicate({"a": 1}) is False


# ---------------------------------------------------------------------------------------------
# Boolean structure


def test_real_world_filters():
    task = make_task(state="completed", executionInfo={"result": "failure", "exitCode": 1})
    assert matches("(state eq 'completed') and (executionInfo/result eq 'failure')", task) is True
    assert matches("(state eq 'completed') and (executionInfo/result eq 'success')", task) is False
    assert matches("state eq 'active'", task) is False
    assert matches("executionInfo/exitCode ne 0", task) is True
    assert compile_filter("poolId eq 'p1'", {"poolId": STRING})({"poolId": "P1"}) is True


def test_and_binds_tighter_than_or():
    # true or (false and false) -> true; (true or false) and false would be false.
    assert matches("id eq 'task-1' or id eq 'x' and state eq 'x'") is True
    # (false and true) or false -> false; false and (true or false) is also false, so also check
    # false and true or true -> true (would be false if 'or' bound tighter).
    assert matches("id eq 'x' and state eq 'completed' or state eq 'x'") is False
    assert matches("id eq 'x' and state eq 'completed' or state eq 'completed'") is True


def test_parentheses_override_precedence():
    assert matches("(id eq 'task-1' or id eq 'x') and state eq 'x'") is False
    assert matches("id eq 'x' and (state eq 'completed' or state eq 'completed')") is False
    assert matches("((id eq 'task-1'))") is True
    assert matches("( (id eq 'task-1') and ((state eq 'completed')) )") is True


def test_long_chains():
    assert matches("id eq 'a' or id eq 'b' or id eq 'c' or id eq 'task-1'") is True
    assert matches("id eq 'task-1' and state eq 'completed' and executionInfo/exitCode eq 1") is False


def test_keywords_are_case_insensitive():
    assert matches("id EQ 'task-1' AND state Ne 'active' OR id eq 'x'") is True
    assert matches("StartsWith(id, 'task')") is True


def test_whitespace_tolerance():
    assert matches("  id   eq   'task-1'   and(state eq'completed')  ") is True
    assert matches("startswith( id , 'task' )") is True
    assert matches("\tid\neq 'task-1'") is True


def test_not():
    assert matches("not (id eq 'task-1')") is False
    assert matches("not (id eq 'x')") is True
    assert matches("not startswith(id, 'task')") is False
    assert matches("NOT startswith(id, 'zzz') and state eq 'completed'") is True


def test_startswith_compared_to_boolean():
    assert matches("startswith(id, 'task') eq true") is True
    assert matches("startswith(id, 'task') eq false") is False
    assert matches("startswith(id, 'zzz') ne true") is True


def test_predicate_does_not_mutate_entity():
    task = make_task()
    snapshot = repr(task)
    compile_filter(
        "startswith(id,'t') and creationTime gt '2000-01-01T00:00:00Z' and executionInfo/exitCode eq 0",
        TASK_FIELDS,
    )(task)
    assert repr(task) == snapshot


# ---------------------------------------------------------------------------------------------
# Errors


def error_message(text, fields=TASK_FIELDS):
    with pytest.raises(ODataError) as info:
        compile_filter(text, fields)
    return str(info.value)


def test_odata_error_is_a_value_error():
    assert issubclass(ODataError, ValueError)


def test_unknown_property():
    message = error_message("foo eq 'x'")
    assert "Unsupported property 'foo'" in message
    assert "$filter" in message


def test_unknown_nested_property():
    assert "'executionInfo/nope'" in error_message("executionInfo/nope eq 1")


def test_property_names_are_case_sensitive():
    assert "'State'" in error_message("State eq 'active'")


def test_unknown_property_inside_startswith():
    assert "Unsupported property 'bogus'" in error_message("startswith(bogus, 'x')")


def test_wrong_literal_type_for_string():
    message = error_message("state eq 12")
    assert "Expected a quoted string after 'eq'" in message
    assert "position 9" in message


def test_wrong_literal_type_for_integer():
    message = error_message("executionInfo/exitCode eq '0'")
    assert "Expected an integer" in message
    assert "executionInfo/exitCode" in message


def test_decimal_is_not_an_integer():
    assert "Expected an integer" in error_message("executionInfo/exitCode eq 1.5")


def test_wrong_literal_type_for_datetime():
    assert "Expected a datetime" in error_message("creationTime gt 5")


def test_invalid_datetime_literal():
    message = error_message("creationTime gt datetime'yesterday'")
    assert "Invalid datetime 'yesterday'" in message
    assert "Invalid datetime" in error_message("creationTime gt '2026-13-45T00:00:00Z'")


def test_true_is_not_a_string():
    assert "Expected a quoted string" in error_message("id eq true")


def test_startswith_on_integer():
    message = error_message("startswith(executionInfo/exitCode, '1')")
    assert "startswith is not supported" in message
    assert "executionInfo/exitCode" in message


def test_startswith_on_datetime():
    assert "startswith is not supported" in error_message("startswith(creationTime, '2026')")


def test_startswith_needs_a_string_prefix():
    assert "Expected a quoted string as the startswith prefix" in error_message("startswith(id, 1)")


def test_ordering_on_enum():
    message = error_message("state gt 'active'")
    assert "Operator 'gt' is not supported" in message
    assert "'state'" in message


def test_ordering_against_null():
    assert "null can only be compared with eq or ne" in error_message("executionInfo/exitCode gt null")


def test_unterminated_string():
    message = error_message("id eq 'task-1")
    assert "Unterminated string" in message
    assert "position 6" in message


def test_unterminated_datetime():
    assert "Unterminated string" in error_message("creationTime eq datetime'2026-11-24")


def test_trailing_garbage():
    message = error_message("id eq 'task-1' extra")
    assert "Unexpected 'extra'" in message
    assert "after a complete expression" in message


def test_trailing_close_paren():
    assert "Unexpected ')'" in error_message("id eq 'x')")


def test_missing_close_paren():
    assert "Expected ')'" in error_message("(id eq 'x'")


def test_missing_operator():
    message = error_message("id 'x'")
    assert "Expected a comparison operator" in message
    assert "after 'id'" in message


def test_unknown_operator():
    assert "found 'like'" in error_message("id like 'x'")


def test_missing_literal():
    assert "found end of filter" in error_message("id eq")


def test_dangling_and():
    assert "Expected a property name" in error_message("id eq 'x' and")


def test_empty_parentheses():
    assert "Expected a property name" in error_message("()")


def test_literal_on_the_left():
    assert "Expected a property name at position 0" in error_message("'x' eq id")


def test_unexpected_character():
    assert "Unexpected character '$'" in error_message("id eq $x")


def test_not_before_a_bare_comparison():
    assert "after 'not'" in error_message("not id eq 'x'")


def test_bad_boolean_after_startswith():
    assert "Expected true or false" in error_message("startswith(id,'x') eq 'yes'")


# ---------------------------------------------------------------------------------------------
# $select


@pytest.mark.parametrize("text", [None, "", "  "])
def test_parse_select_blank(text):
    assert parse_select(text) is None


def test_parse_select_items():
    assert parse_select("id,state, executionInfo/exitCode") == ["id", "state", "executionInfo/exitCode"]
    assert parse_select(" id ") == ["id"]
    assert parse_select("odata.metadata,url") == ["odata.metadata", "url"]


def test_parse_select_drops_duplicates():
    assert parse_select("id,id,state") == ["id", "state"]


@pytest.mark.parametrize("text", ["id,,state", "id,", ",id", " , "])
def test_parse_select_rejects_empty_items(text):
    with pytest.raises(ODataError, match="Empty property name in \\$select"):
        parse_select(text)


@pytest.mark.parametrize("text", ["id;state", "exec info", "a//b", "a/", "/a", "id eq 1", "*"])
def test_parse_select_rejects_bad_names(text):
    with pytest.raises(ODataError, match="Invalid property name"):
        parse_select(text)


def test_project_none_returns_entity():
    task = make_task()
    assert project(task, None) is task


def test_project_top_level_drops_url_and_metadata():
    task = make_task()
    task["odata.metadata"] = "https://example/$metadata#tasks/@Element"
    assert project(task, ["id", "state"]) == {"id": "task-1", "state": "completed"}


def test_project_keeps_url_and_metadata_when_selected():
    task = make_task()
    task["odata.metadata"] = "meta"
    assert project(task, ["url", "odata.metadata"]) == {"url": task["url"], "odata.metadata": "meta"}


def test_project_nested_paths_merge_under_parent():
    task = make_task()
    projected = project(task, ["id", "executionInfo/exitCode", "executionInfo/result", "nodeInfo/poolId"])
    assert projected == {
        "id": "task-1",
        "executionInfo": {"exitCode": 0, "result": "success"},
        "nodeInfo": {"poolId": "Pool-A"},
    }


def test_project_missing_properties_are_left_out():
    task = make_task()
    del task["displayName"]
    task["executionInfo"] = {"result": "success"}
    projected = project(task, ["id", "displayName", "executionInfo/exitCode", "nodeInfo/missing", "nope/x"])
    assert projected == {"id": "task-1"}


def test_project_keeps_explicit_none_values():
    assert project({"id": "a", "exitCode": None}, ["exitCode"]) == {"exitCode": None}


def test_project_whole_parent_and_child_in_either_order():
    task = make_task()
    expected = {"executionInfo": task["executionInfo"]}
    assert project(task, ["executionInfo", "executionInfo/exitCode"]) == expected
    assert project(task, ["executionInfo/exitCode", "executionInfo"]) == expected


def test_project_does_not_mutate_input():
    task = make_task()
    snapshot = repr(task)
    projected = project(task, ["executionInfo", "executionInfo/exitCode", "id"])
    projected["id"] = "changed"
    projected = project(task, ["executionInfo/exitCode"])
    projected["executionInfo"]["exitCode"] = 99
    assert repr(task) == snapshot


class ReadOnlyDict(dict):
    def __setitem__(self, key, value):
        raise AssertionError(f"entity was written to: {key!r}")


def test_project_never_writes_into_entity_dicts():
    task = ReadOnlyDict(id="t", executionInfo=ReadOnlyDict(exitCode=0, result="success"))
    for select in (["executionInfo", "executionInfo/exitCode"], ["executionInfo/exitCode", "executionInfo"]):
        assert project(task, select) == {"executionInfo": {"exitCode": 0, "result": "success"}}


def test_project_accepts_parse_select_output():
    task = make_task()
    assert project(task, parse_select("id, executionInfo/result")) == {
        "id": "task-1",
        "executionInfo": {"result": "success"},
    }


# -- lower_bound: where a listing filtered on recent transitions can start reading ---------------------------------

SINCE = "datetime'2026-12-07T10:00:00.5Z'"
LATER = "datetime'2026-12-07T11:00:00Z'"


@pytest.mark.parametrize(("text", "expected"), [
    (f"stateTransitionTime ge {SINCE}", "2026-12-07T10:00:00.5Z"),
    (f"stateTransitionTime gt {SINCE}", "2026-12-07T10:00:00.5Z"),
    (f"state eq 'completed' and stateTransitionTime ge {SINCE}", "2026-12-07T10:00:00.5Z"),
    (f"stateTransitionTime ge {SINCE} and stateTransitionTime ge {LATER}", "2026-12-07T11:00:00Z"),
    ("stateTransitionTime ge '2026-12-07T10:00:00.5Z'", "2026-12-07T10:00:00.5Z"),
    # Not a bound every match satisfies: an alternative, a group, a negation, another comparison or property.
    (f"stateTransitionTime ge {SINCE} or state eq 'active'", None),
    (f"(stateTransitionTime ge {SINCE})", None),
    (f"not (stateTransitionTime lt {SINCE})", None),
    (f"stateTransitionTime lt {SINCE}", None),
    (f"creationTime ge {SINCE}", None),
    ("", None),
    (None, None),
])
def test_lower_bound_is_a_clause_every_match_satisfies(text, expected):
    compile_filter(text, TASK_FIELDS)   # every case is a filter the service accepts
    assert lower_bound(text, "stateTransitionTime") == (expected and parse_datetime(expected))
