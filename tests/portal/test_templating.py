"""portal.submit's spec, values, render and preview: template specs, every parameter type, injection attempts, fan-out
expansion and the preview.

The last tests run rendered command lines for real: through /bin/sh here, and as a task on localbatch."""

import shlex
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from batchsync.gateway import BatchGateway, ImageSpec, JobSpec, PoolSpec
from portal.submit import preview, render
from portal.submit.spec import SpecError, parse_spec
from portal.submit.values import InputFile, ParameterErrors, clean_values, parse_csv
from tests.localbatch.helpers import wait_for

INJECTIONS = [
    "; touch /tmp/pwned",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "' ; touch /tmp/pwned ; '",
    '" ; touch /tmp/pwned ; "',
    "a && touch /tmp/pwned",
    "| touch /tmp/pwned",
    "${HOME}",
    "*",
    "-rf",
    "'\"'\"'",
    "\\",
]


def spec(**overrides) -> dict:
    base = {
        "pool": {"pool_id": "render-pool"},
        "command_line": "echo {text} {n} {x} {flag} {mode}",
        "parameters": [
            {"name": "text", "type": "string", "max_length": 200},
            {"name": "n", "type": "integer", "min": 1, "max": 100, "default": 5},
            {"name": "x", "type": "number", "min": 0, "max": 1},
            {"name": "flag", "type": "boolean", "flag": "--verbose"},
            {"name": "mode", "type": "choice", "choices": ["fast", "slow"], "default": "fast"},
        ],
    }
    base.update(overrides)
    return base


def clean(values, raw=None, files=None):
    return clean_values(parse_spec(raw or spec()), values, files)


def render_one(raw, values, files=None):
    parsed = parse_spec(raw)
    cleaned, cleaned_files = clean_values(parsed, values, files)
    return next(render.expand_tasks(parsed, cleaned, cleaned_files))


def run_in_shell(command_line: str, cwd: Path) -> str:
    """Run a rendered Batch command line as Batch does (split into words, no shell of its own) and return stdout."""
    completed = subprocess.run(shlex.split(command_line), cwd=cwd, capture_output=True, text=True, timeout=10)
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


# --- the spec --------------------------------------------------------------------------------------------


def test_a_complete_spec_parses_with_every_part():
    parsed = parse_spec(spec(
        resource_files=[{"http_url": "https://example.org/tool.sh", "file_path": "tool.sh"}],
        job_preparation={"command_line": "/bin/true"},
        outputs=[{"pattern": "out/*.png"}],
        environment={"MODE": "x"},
        constraints={"max_wall_clock_seconds": 60, "max_task_retry_count": 2},
        required_slots=2, priority=10))

    assert parsed.pool_id == "render-pool" and parsed.required_slots == 2 and parsed.priority == 10
    assert parsed.outputs == ({"pattern": "out/*.png", "upload_condition": "tasksuccess"},)
    assert parsed.max_wall_clock_seconds == 60 and parsed.max_task_retry_count == 2
    assert [p.type for p in parsed.parameters] == ["string", "integer", "number", "boolean", "choice"]


def test_an_auto_pool_spec_becomes_a_job_with_a_pool_of_its_own():
    parsed = parse_spec(spec(pool={"auto_pool": {
        "vm_size": "standard_d2s_v3", "node_count": 2,
        "image": {"publisher": "canonical", "offer": "ubuntu", "sku": "22_04-lts",
                  "node_agent_sku_id": "batch.node.ubuntu 22.04"},
        "start_task": {"command_line": "/bin/true"}}}))

    job = render.job_spec(parsed, job_id="sub-abc", display_name="x")
    assert job.pool_id is None and job.auto_pool.target_dedicated_nodes == 2
    assert job.auto_pool.start_task_command_line == "/bin/true" and job.on_all_tasks_complete == "noaction"
    assert parsed.pool_label == "a pool of its own (2 × standard_d2s_v3)"


AUTO_POOL = {"vm_size": "standard_d2s_v3", "node_count": 1,
             "image": {"publisher": "canonical", "offer": "ubuntu", "sku": "22_04-lts",
                       "node_agent_sku_id": "batch.node.ubuntu 22.04"}}
# A job id as every submission's is: sub- and 32 hex digits, 36 characters.
JOB_ID = "sub-5eb0abbae0614a07a4d2c1e6f03b9d18"


def test_an_auto_pools_id_prefix_is_the_first_20_characters_of_the_job_id():
    parsed = parse_spec(spec(pool={"auto_pool": AUTO_POOL}))

    job = render.job_spec(parsed, job_id=JOB_ID, display_name="x")

    # Batch allows at most 20 (it used to be the first 40, all 36 of the id, which Batch refused).
    assert job.auto_pool.id == "sub-5eb0abbae0614a07" == JOB_ID[:20]
    assert render.batch_id_problems(parsed, job_id=JOB_ID) == []


def test_a_templates_own_auto_pool_id_prefix_is_used():
    parsed = parse_spec(spec(pool={"auto_pool": {**AUTO_POOL, "id_prefix": "render_farm-20chars"}}))

    assert render.job_spec(parsed, job_id=JOB_ID, display_name="x").auto_pool.id == "render_farm-20chars"


@pytest.mark.parametrize("prefix", ["a" * 21, "has space", "ü", 7])
def test_an_auto_pool_id_prefix_batch_would_refuse_is_a_problem_naming_the_field(prefix):
    parsed = parse_spec(spec(pool={"auto_pool": {**AUTO_POOL, "id_prefix": prefix}}))

    [problem] = render.batch_id_problems(parsed, job_id=JOB_ID)

    assert problem.startswith("pool.auto_pool.id_prefix: ")
    assert "1 to 20 letters, digits, hyphens and underscores." in problem


def test_ids_batch_would_refuse_are_problems_naming_what_makes_them():
    parsed = parse_spec(spec(pool={"auto_pool": AUTO_POOL}))

    problems = render.batch_id_problems(parsed, job_id="job id with spaces")

    assert problems == [
        "job id “job id with spaces”: Batch allows 1 to 64 letters, digits, hyphens and underscores.",
        "pool.auto_pool (the id prefix made from the job id): the auto pool's id prefix “job id with spaces” is 18 "
        "characters; Batch allows 1 to 20 letters, digits, hyphens and underscores."]


@pytest.mark.parametrize("change, words", [
    ({"pool": {}}, "pool:"),
    ({"command_line": "echo {nobody}"}, "names no parameter"),
    ({"command_line": "echo {n!r}"}, "only plain"),
    ({"command_line": "echo {n"}, "braces do not match"),
    ({"command_line": 'echo "{text}"'}, "inside quotes"),
    ({"parameters": [{"name": "1bad", "type": "string"}]}, "name must be"),
    ({"parameters": [{"name": "a", "type": "blob"}]}, "type must be one of"),
    ({"parameters": [{"name": "a", "type": "choice"}]}, "needs a list of choices"),
    ({"parameters": [{"name": "a", "type": "integer", "max": 3, "default": 9}]}, "default does not fit"),
    ({"fan_out": {"kind": "range", "parameter": "text"}}, "range fan-out needs"),
    ({"constraints": {"max_task_retry_count": 1000}}, "max_task_retry_count"),
    ({"resource_files": [{"http_url": "https://x/y", "file_path": "../../etc/passwd"}]}, "relative file_path"),
    ({"surprise": 1}, "Unknown key"),
])
def test_a_spec_with_a_mistake_is_refused_with_words_that_name_it(change, words):
    with pytest.raises(SpecError) as caught:
        parse_spec(spec(**change))

    assert any(words in problem for problem in caught.value.problems), caught.value.problems


# --- values of every type ------------------------------------------------------------------------------------


def test_values_are_converted_to_their_types_and_defaults_fill_the_gaps():
    values, _ = clean({"text": "hello world", "x": "0.25", "flag": "on"})

    assert values == {"text": "hello world", "n": 5, "x": 0.25, "flag": True, "mode": "fast"}


@pytest.mark.parametrize("name, value, words", [
    ("n", "1.5", "whole number"),
    ("n", "1e3", "whole number"),
    ("n", " 7; rm", "whole number"),
    ("n", True, "whole number"),
    ("n", "0", "at least 1"),
    ("n", "101", "at most 100"),
    ("x", "nan", "give a number"),
    ("x", "inf", "give a number"),
    ("x", "1e400", "finite"),
    ("x", "2", "at most 1"),
    ("x", "$(id)", "give a number"),
    ("flag", "maybe", "yes or no"),
    ("mode", "FAST", "choose one of"),
    ("mode", "fast; rm -rf /", "choose one of"),
    ("text", "line one\nline two", "control characters"),
    ("text", "nul\x00byte", "control characters"),
    ("text", "carriage\rreturn", "control characters"),
    ("text", "x" * 201, "at most 200 characters"),
    ("text", ["a list"], "give text"),
])
def test_a_value_its_type_does_not_allow_is_refused_in_plain_words(name, value, words):
    with pytest.raises(ParameterErrors) as caught:
        clean({name: value})

    assert words in caught.value.errors[name]


def test_a_required_value_that_is_missing_is_named():
    raw = spec(parameters=[{"name": "text", "type": "string", "required": True}], command_line="echo {text}")

    with pytest.raises(ParameterErrors) as caught:
        clean({"text": ""}, raw)

    assert caught.value.errors == {"text": "this is required."}


def test_a_value_for_a_parameter_the_template_does_not_have_is_refused():
    with pytest.raises(ParameterErrors) as caught:
        clean({"text": "a", "command_line": "rm -rf /"})

    assert "no such parameter" in caught.value.errors["command_line"]


def test_a_string_pattern_restricts_what_is_accepted():
    raw = spec(parameters=[{"name": "text", "type": "string", "pattern": "[a-z]+"}], command_line="echo {text}")

    assert clean({"text": "abc"}, raw)[0] == {"text": "abc"}
    with pytest.raises(ParameterErrors):
        clean({"text": "abc1"}, raw)


FILES_SPEC = spec(
    command_line="wc -w {file}",
    parameters=[{"name": "texts", "type": "files", "extensions": [".txt"], "max_files": 3, "max_file_bytes": 1000}],
    fan_out={"kind": "files", "parameter": "texts"})


def upload(name, size=10):
    return InputFile(name=name, url=f"http://127.0.0.1:10000/devstoreaccount1/in/{quote(name)}", size=size)


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b.txt", ".hidden.txt", "-rf.txt", "a\nb.txt", "$(id).txt",
                                  "a;b.txt", "`id`.txt", "trailing.txt ", "x" * 300 + ".txt", "a'b.txt"])
def test_a_file_name_that_is_not_plain_is_refused(name):
    with pytest.raises(ParameterErrors) as caught:
        clean({}, FILES_SPEC, {"texts": [upload(name)]})

    assert "plain file name" in caught.value.errors["texts"]


@pytest.mark.parametrize("files, words", [
    ([upload("a.exe")], "accepted kinds"),
    ([upload("a.txt", size=1001)], "larger than"),
    ([upload("a.txt"), upload("b.txt"), upload("c.txt"), upload("d.txt")], "at most 3 files"),
    ([upload("a.txt"), upload("A.TXT")], "same name"),
    ([InputFile(name="a.txt", url="file:///etc/passwd", size=1)], "no usable download address"),
])
def test_wrong_files_are_refused(files, words):
    with pytest.raises(ParameterErrors) as caught:
        clean({}, FILES_SPEC, {"texts": files})

    assert words in caught.value.errors["texts"]


# --- rendering and fan-out ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", INJECTIONS)
def test_an_injection_attempt_in_a_string_is_printed_literally_by_the_shell(value, tmp_path):
    task = render_one(spec(command_line="printf '%s\\n' {text}"), {"text": value})

    assert task.command_line.startswith("/bin/sh -c '")
    assert run_in_shell(task.command_line, tmp_path) == value + "\n"
    assert list(tmp_path.iterdir()) == []


def test_a_very_long_value_within_the_limit_stays_one_word(tmp_path):
    value = "$(x)`y`;'\"" * 1000
    raw = spec(command_line="printf '%s' {text} | wc -c",
               parameters=[{"name": "text", "type": "string", "max_length": 20_000}])

    task = render_one(raw, {"text": value})

    assert run_in_shell(task.command_line, tmp_path).strip() == str(len(value))


def test_every_type_renders_as_one_quoted_word(tmp_path):
    task = render_one(spec(command_line="printf '[%s]' {text} {n} {x} {mode} {flag}"),
                      {"text": "a b", "n": "7", "x": "0.5", "mode": "slow", "flag": True})

    assert run_in_shell(task.command_line, tmp_path) == "[a b][7][0.5][slow][--verbose]"


def test_a_boolean_without_a_flag_renders_true_or_false(tmp_path):
    raw = spec(command_line="printf '[%s]' {on}", parameters=[{"name": "on", "type": "boolean"}])

    assert run_in_shell(render_one(raw, {"on": "no"}).command_line, tmp_path) == "[false]"


def test_files_fan_out_gives_one_task_per_file_with_only_its_file():
    parsed = parse_spec(FILES_SPEC)
    values, files = clean_values(parsed, {}, {"texts": [upload("a.txt"), upload("b c.txt")]})

    tasks = list(render.expand_tasks(parsed, values, files))

    assert [t.id for t in tasks] == ["t00001", "t00002"]
    assert [[f.file_path for f in t.resource_files] for t in tasks] == [["inputs/a.txt"], ["inputs/b c.txt"]]
    assert tasks[1].command_line == "/bin/sh -c " + shlex.quote("wc -w 'inputs/b c.txt'")
    assert [t.display_name for t in tasks] == ["a.txt", "b c.txt"]


def test_range_fan_out_gives_one_task_per_value_and_resuming_gives_the_same_tasks():
    raw = spec(command_line="echo {frame}", parameters=[{"name": "frames", "type": "integer", "max": 1000}],
               fan_out={"kind": "range", "parameter": "frames", "start": 1, "as": "frame"})
    parsed = parse_spec(raw)

    everything = list(render.expand_tasks(parsed, {"frames": 240}, {}))
    from_100 = list(render.expand_tasks(parsed, {"frames": 240}, {}, start=100))

    assert len(everything) == 240 and everything[0].id == "t00001" and everything[-1].id == "t00240"
    assert everything[6].command_line == "/bin/sh -c " + shlex.quote("echo 7")
    assert from_100 == everything[100:]


def test_csv_fan_out_gives_one_task_per_row_with_its_columns_quoted():
    raw = spec(command_line="echo {row.sample} {row.depth}", parameters=[{"name": "table", "type": "file"}],
               fan_out={"kind": "csv", "parameter": "table"})
    parsed = parse_spec(raw)
    rows = parse_csv("table", b"sample,depth\nS1,10\n\n$(id),`x`\n")

    tasks = list(render.expand_tasks(parsed, {}, {}, rows=rows))

    assert [t.command_line for t in tasks] == ["/bin/sh -c " + shlex.quote("echo S1 10"),
                                               "/bin/sh -c " + shlex.quote("echo '$(id)' '`x`'")]


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"a b,c\n1,2\n", "column name"),
    (b"a,b\n1\n", "line 2 has 1 values"),
    (b"a,b\n", "no rows"),
    (b"a,b\n\"x\ny\",1\n", "single lines"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_a_csv_that_cannot_be_used_is_refused(content, words):
    with pytest.raises(ParameterErrors) as caught:
        parse_csv("table", content)

    assert words in caught.value.errors["table"]


def test_outputs_and_logs_are_uploaded_under_the_job_and_task():
    parsed = parse_spec(spec(outputs=[{"pattern": "out/*.png"}]))

    task = next(render.expand_tasks(parsed, {"n": 1}, {}, output_container_url="http://blob/outputs?sig=x",
                                        logs_container_url="http://blob/logs?sig=y", job_id="sub-1"))

    assert [(o.file_pattern, o.path, o.upload_condition) for o in task.output_files] == [
        ("out/*.png", "sub-1/t00001/outputs", "tasksuccess"), ("../std*.txt", "sub-1/t00001/logs", "taskcompletion")]


def test_an_output_naming_one_file_is_uploaded_into_the_task_folder_under_its_own_name():
    # For a pattern without wildcards Batch takes the path as the blob's whole name.
    parsed = parse_spec(spec(outputs=[{"pattern": "report/summary.csv"}]))

    task = next(render.expand_tasks(parsed, {"n": 1}, {}, output_container_url="http://blob/outputs?sig=x",
                                    job_id="sub-1"))

    assert [(o.file_pattern, o.path) for o in task.output_files] == [
        ("report/summary.csv", "sub-1/t00001/outputs/summary.csv")]


def test_the_preview_says_how_many_tasks_where_and_how_much_input():
    parsed = parse_spec(FILES_SPEC)
    files = {"texts": (upload("a.txt", 600), upload("b.txt", 400))}

    assert preview.preview(parsed, {}, files).summary == "creates 2 tasks on pool render-pool; inputs 1 KB"
    assert preview.Preview(240, "pool render-pool", 1_200_000_000, 3).summary == (
        "creates 240 tasks on pool render-pool; inputs 1.2 GB")


# --- for real on localbatch -----------------------------------------------------------------------------------


UBUNTU = dict(publisher="canonical", offer="0001-com-ubuntu-server-jammy", sku="22_04-lts",
              node_agent_sku_id="batch.node.ubuntu 22.04")


def test_a_command_substitution_in_a_value_is_printed_not_run_by_a_real_task(localbatch, tmp_path):
    marker = tmp_path / "pwned"
    value = f"$(touch {marker}) `touch {marker}`; touch {marker}"
    task = render_one(spec(command_line="echo {text}", parameters=[{"name": "text", "type": "string"}]),
                      {"text": value})

    with BatchGateway(localbatch.endpoint, localbatch.account_name, localbatch.account_key) as gateway:
        gateway.create_pool(PoolSpec(id="render-pool", vm_size="standard_d2s_v3", image=ImageSpec(**UBUNTU),
                                     target_dedicated_nodes=1))
        gateway.create_job(JobSpec(id="job-1", pool_id="render-pool"))
        gateway.add_tasks("job-1", [task])
        done = wait_for(lambda: (t := gateway.get_task("job-1", task.id)).state == "completed" and t, timeout=30,
                        message="the task to complete")
        stdout = gateway.read_task_file("job-1", task.id, "stdout.txt").decode()

    assert done.exit_code == 0
    assert stdout == value + "\n"
    assert not marker.exists()
