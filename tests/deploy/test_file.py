"""Reading deploy files: the issue's example loads; every error names its line and its field."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from modelyard.deploy.file import (
    MAX_DEPTH,
    MAX_FILE_BYTES,
    MAX_NODES,
    MAX_PROBLEMS_SHOWN,
    DeployFileError,
    DeployFileProblem,
    DeployFileTooLarge,
    format_field,
    load_deploy_file,
    read_deploy_file,
)
from modelyard.errors import ErrorKind, InvalidInput

EXAMPLE = """\
deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec: {uri: spam@production, replicas: 2, resources: {cpu: 1, memory: 1Gi}, weight: 80}
  - version: v2
    spec: {uri: spam/7, replicas: 1, weight: 20, batching: {max_batch_size: 32}}
"""


def errors(text: str) -> list[str]:
    """The lines of the error ``text`` raises."""
    with pytest.raises(DeployFileError) as caught:
        load_deploy_file(text, "deploy.yaml")
    return str(caught.value).splitlines()


def test_the_issue_example_loads() -> None:
    loaded = load_deploy_file(EXAMPLE)
    (deployment,) = loaded.deployments
    assert (deployment.project, deployment.model) == ("mail", "spam")
    v1, v2 = deployment.versions
    assert (v1.version, v1.spec.uri, v1.spec.replicas, v1.spec.weight) == ("v1", "spam@production", 2, 80)
    assert (v1.spec.resources.cpu, v1.spec.resources.memory) == (1, "1Gi")
    assert (v2.version, v2.spec.uri, v2.spec.weight, v2.spec.batching.max_batch_size) == (
        "v2",
        "spam/7",
        20,
        32,
    )


@pytest.mark.parametrize("text", ["", "\n", "# nothing deployed yet\n", "---\n"])
def test_an_empty_file_deploys_nothing(text: str) -> None:
    assert load_deploy_file(text).deployments == []


def test_anchors_and_merge_keys_load() -> None:
    text = """\
deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec: &base
      uri: spam@production
      replicas: 2
      weight: 90
  - version: v2
    spec:
      <<: *base
      weight: 10
"""
    v1, v2 = load_deploy_file(text).deployments[0].versions
    assert (v2.spec.uri, v2.spec.replicas, v2.spec.weight) == ("spam@production", 2, 10)
    assert v1.spec.weight == 90


def test_an_unknown_top_level_key() -> None:
    assert errors("deployments: []\ndefaults: {}\n") == [
        "deploy.yaml:2: defaults: unknown field 'defaults' (expected one of: apiVersion, deployments)"
    ]


def test_negative_replicas_name_the_line_and_field() -> None:
    text = EXAMPLE.replace("{uri: spam/7, replicas: 1", "{uri: spam/7, replicas: -1")
    assert errors(text) == [
        "deploy.yaml:8: deployments[0].versions[1].spec.replicas: Input should be greater than or equal to 0"
    ]


def test_an_unknown_key_is_named_with_a_suggestion() -> None:
    text = EXAMPLE.replace("replicas: 2", "replica: 2")
    assert errors(text) == [
        "deploy.yaml:6: deployments[0].versions[0].spec.replica: unknown field 'replica' (did you mean "
        "'replicas'? expected one of: uri, replicas, autoscaling, resources, weight, mirror, batching, "
        "server, probes, image, rollout, replica_gate)"
    ]


def test_an_unknown_key_deep_down_names_the_fields_of_its_own_model() -> None:
    text = EXAMPLE.replace("batching: {max_batch_size: 32}", "batching: {max_batch: 32}")
    (line,) = errors(text)
    assert line.startswith("deploy.yaml:8: deployments[0].versions[1].spec.batching.max_batch: unknown field")
    assert "did you mean 'max_batch_size'? expected one of: max_batch_size, max_latency_ms)" in line


def test_a_version_listed_twice_points_at_the_second() -> None:
    text = EXAMPLE.replace("- version: v2", "- version: v1")
    assert errors(text) == [
        "deploy.yaml:7: deployments[0].versions[1].version: version 'v1' is listed twice "
        "(first as versions[0])"
    ]


def test_a_model_listed_twice_points_at_the_second() -> None:
    text = EXAMPLE + EXAMPLE.split("\n", 1)[1]
    assert errors(text) == [
        "deploy.yaml:9: deployments[1]: mail/spam is listed twice (first as deployments[0])"
    ]


def test_a_duplicate_key_is_an_error_not_the_last_one_winning() -> None:
    text = EXAMPLE.replace("  - version: v2\n", "  - version: v2\n    version: v3\n")
    assert errors(text) == [
        "deploy.yaml:8: deployments[0].versions[1].version: duplicate key 'version' (first on line 7)"
    ]


def test_a_duplicate_key_in_a_flow_mapping() -> None:
    text = EXAMPLE.replace("weight: 80}", "weight: 80, weight: 90}")
    assert errors(text) == [
        "deploy.yaml:6: deployments[0].versions[0].spec.weight: duplicate key 'weight' (first on line 6)"
    ]


def test_a_missing_uri_is_reported_on_the_line_of_its_mapping() -> None:
    text = """\
deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec:
      replicas: 1
      weight: 1
"""
    assert errors(text) == ["deploy.yaml:6: deployments[0].versions[0].spec.uri: Field required"]


def test_a_bad_memory_quantity() -> None:
    text = EXAMPLE.replace("memory: 1Gi", "memory: 1GB")
    assert errors(text) == [
        "deploy.yaml:6: deployments[0].versions[0].spec.resources.memory: memory '1GB' must be bytes "
        "with an optional suffix (512Mi, 1Gi, 1G)"
    ]


def test_replicas_and_autoscaling_together() -> None:
    text = """\
deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec:
      uri: spam/7
      replicas: 2
      autoscaling:
        min_replicas: 1
        max_replicas: 4
      weight: 1
"""
    assert errors(text) == [
        "deploy.yaml:9: deployments[0].versions[0].spec.autoscaling: give either replicas or "
        "autoscaling, not both"
    ]


def test_a_yaml_syntax_error_names_its_line() -> None:
    text = EXAMPLE.replace("  versions:", " versions:")
    assert errors(text) == [
        "deploy.yaml:4: invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping on line 1)"
    ]


def test_an_unclosed_flow_mapping() -> None:
    (line,) = errors(EXAMPLE.replace("max_batch_size: 32}}", "max_batch_size: 32}"))
    assert line.startswith("deploy.yaml:9: invalid YAML:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- 1\n", "deploy.yaml:1: the file must be a mapping with a 'deployments' list"),
        ("a: 1\n---\nb: 2\n", "deploy.yaml:2: invalid YAML: but found another document"),
        ("deployments: !!python/object:os.system {}\n", "deploy.yaml:1: invalid YAML: could not determine"),
        (
            "x: !!python/object/apply:os.system [echo hi]\n",
            "deploy.yaml:1: invalid YAML: could not determine",
        ),
        ("x: !!python/name:os.system\n", "deploy.yaml:1: invalid YAML: could not determine"),
        ("deployments: []\nx: [\x07]\n", "deploy.yaml:2: invalid YAML: unacceptable character #x0007"),
        ("apiVersion: v2\n", "deploy.yaml:1: apiVersion: Input should be 'modelyard/v1'"),
    ],
)
def test_documents_that_are_not_deploy_files(text: str, expected: str) -> None:
    (line,) = errors(text)
    assert line.startswith(expected)


def test_every_error_is_reported_sorted_by_line() -> None:
    text = """\
deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec:
      uri: spam@production
      resources: {cpu: 0, memory: lots}
      mirror: {always: true}
  - version: bad name
    spec: {replicas: -1}
"""
    with pytest.raises(DeployFileError) as caught:
        load_deploy_file(text, "deploy.yaml")
    error = caught.value
    assert isinstance(error, InvalidInput)
    assert error.kind is ErrorKind.INVALID_INPUT
    spec0, spec1 = "deployments[0].versions[0].spec", "deployments[0].versions[1]"
    assert [(line, field) for line, field, _ in error.errors] == [
        (8, f"{spec0}.resources.cpu"),
        (8, f"{spec0}.resources.memory"),
        (9, f"{spec0}.mirror"),  # one line per union member pydantic tried, without its tag
        (9, f"{spec0}.mirror"),
        (10, f"{spec1}.version"),
        (11, f"{spec1}.spec.uri"),
        (11, f"{spec1}.spec.replicas"),
    ]
    cpu = "cpu 0 must be a positive number of cores (1, 0.5) or millicores (500m)"
    assert error.errors[0] == DeployFileProblem(8, f"{spec0}.resources.cpu", cpu)
    assert error.field == f"{spec0}.resources.cpu"
    assert str(error).splitlines()[4] == (
        "deploy.yaml:10: deployments[0].versions[1].version: String should match pattern "
        "'^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$'"
    )


def test_an_error_in_a_merged_mapping_points_at_the_anchor() -> None:
    text = """\
deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec: &base
      uri: spam/7
      replicas: -1
      weight: 1
  - version: v2
    spec:
      <<: *base
      weight: 2
"""
    lines = errors(text)
    assert lines == [
        "deploy.yaml:8: deployments[0].versions[0].spec.replicas: Input should be greater than or equal to 0",
        "deploy.yaml:8: deployments[0].versions[1].spec.replicas: Input should be greater than or equal to 0",
    ]


@pytest.mark.timeout(10)
def test_an_alias_bomb_is_refused_before_validation() -> None:
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 10)}]")
    assert errors("\n".join(lines)) == [f"deploy.yaml:1: more than {MAX_NODES} YAML nodes (aliases expanded)"]


@pytest.mark.timeout(10)
def test_merge_keys_merging_merges_are_counted_expanded() -> None:
    # Each mapping merges the one before: n mappings construct n*n/2 keys.
    lines = ["m0: &m0 {k0: 0}", *(f"m{i}: &m{i} {{<<: *m{i - 1}, k{i}: {i}}}" for i in range(1, 2000))]
    assert errors("\n".join(lines)) == [f"deploy.yaml:1: more than {MAX_NODES} YAML nodes (aliases expanded)"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("a: &r [*r]", 1, "a"),  # 27 bytes that once cost 80 s: the path was copied per node
        ("deployments: []\nx: &m {y: [1, {z: *m}]}\n", 2, "x"),
        ("&root {a: *root}\n", 1, "a"),
    ],
)
def test_a_recursive_alias_is_refused_at_once(text: str, line: int, field: str) -> None:
    started = time.perf_counter()
    with pytest.raises(DeployFileError) as caught:
        load_deploy_file(text, "deploy.yaml")
    assert caught.value.errors == [
        DeployFileProblem(line, field, "a recursive alias: this node contains itself")
    ]
    assert time.perf_counter() - started < 1.0


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "text",
    [
        "[" * 20_000 + "]" * 20_000,
        "deployments: " + "[" * 20_000 + "]" * 20_000,
        "".join(f"{'  ' * i}k:\n" for i in range(700)),  # 700 levels, 490 KB
        "- " * 20_000 + "x\n",
    ],
)
def test_deep_nesting_is_refused_naming_the_limit_not_a_recursion_error(text: str) -> None:
    (line,) = errors(text)
    assert line.endswith(f": nested more than {MAX_DEPTH} levels deep")


def test_nesting_up_to_the_limit_is_read() -> None:
    depth = MAX_DEPTH - 1  # lists inside the root mapping: the root is a level too
    with pytest.raises(DeployFileError, match="unknown field 'x'"):
        load_deploy_file("x: " + "[" * depth + "]" * depth)
    with pytest.raises(DeployFileError, match=f"nested more than {MAX_DEPTH} levels deep"):
        load_deploy_file("x: " + "[" * (depth + 1) + "]" * (depth + 1))


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "text",
    [
        "deployments:\n" + "- 0\n" * 200_000,  # 800 KB: once 5 s to parse, whatever came next
        "deployments: [\n" + "0,\n" * 200_000 + "0]\n",
        "deployments: []\n" + "k: 1\n" * 100_000,  # every duplicate key, on top
    ],
)
def test_too_many_nodes_are_refused_as_they_are_read(text: str) -> None:
    (line,) = errors(text)
    assert line.endswith(f": more than {MAX_NODES} YAML nodes")
    # Refused where the limit was crossed, not after reading the rest: a line number within the
    # first MAX_NODES lines of a file of 100,000 or more (each line holds at least one node).
    stopped_at = int(line.split(":")[1])
    assert stopped_at <= MAX_NODES + 2 < text.count("\n")


@pytest.mark.timeout(10)
def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed() -> None:
    text = "deployments: []\n" + "#" * MAX_FILE_BYTES
    started = time.perf_counter()
    with pytest.raises(DeployFileTooLarge) as caught:
        load_deploy_file(text, "deploy.yaml")
    assert time.perf_counter() - started < 0.5
    assert caught.value.kind is ErrorKind.TOO_LARGE
    assert caught.value.message == (
        f"deploy.yaml: the deploy file is larger than the limit of {MAX_FILE_BYTES} bytes (1024 KiB)"
    )
    load_deploy_file(text[: MAX_FILE_BYTES - 1])  # at the limit: read (comments, an empty list)
    with pytest.raises(DeployFileTooLarge):  # the limit counts bytes, not characters
        load_deploy_file("deployments: []\n#" + "é" * (MAX_FILE_BYTES // 2))


@pytest.mark.timeout(10)
def test_reading_a_file_stops_past_the_limit(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as file:
        file.truncate(100 * 1024 * 1024)  # 100 MiB, sparse: once read whole, for minutes
    with pytest.raises(DeployFileTooLarge, match="larger than the limit"):
        read_deploy_file(huge)
    if Path("/dev/zero").exists():  # never ends: only a bounded read returns at all
        with pytest.raises(DeployFileTooLarge):
            read_deploy_file("/dev/zero")


def test_thousands_of_errors_are_listed_up_to_a_limit() -> None:
    text = "deployments:\n" + "- {project: 'bad name', model: m, versions: []}\n" * 300
    with pytest.raises(DeployFileError) as caught:
        load_deploy_file(text, "deploy.yaml")
    assert len(caught.value.errors) == 600
    lines = str(caught.value).splitlines()
    assert len(lines) == MAX_PROBLEMS_SHOWN + 1
    assert lines[-1] == f"deploy.yaml: and {600 - MAX_PROBLEMS_SHOWN} more problems"


@pytest.mark.timeout(10)
def _refusal_seconds(keys: int) -> float:
    """The fastest of two refusals of a mapping with ``keys`` unknown keys."""
    text = "deployments: []\n" + "".join(f"k{i}: 1\n" for i in range(keys))
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        with pytest.raises(DeployFileError) as caught:
            load_deploy_file(text, "deploy.yaml")
        best = min(best, time.perf_counter() - started)
    assert len(caught.value.errors) == keys
    assert caught.value.errors[-1][:2] == (keys + 1, f"k{keys - 1}")
    return best


def test_errors_in_one_wide_mapping_are_placed_in_linear_time() -> None:
    # Unknown keys in one mapping: each error's line was once found by scanning the mapping, so 16x
    # the keys cost 256x the time. Measured against itself in the same run, with a wide margin for
    # a loaded machine: linear is about 16x, quadratic 256x.
    ratio = _refusal_seconds(16_000) / _refusal_seconds(1_000)
    assert ratio < 64.0, f"16x the keys took {ratio:.1f}x the time"


def test_read_deploy_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "deploy.yaml"
    path.write_text(EXAMPLE)
    assert read_deploy_file(path) == load_deploy_file(EXAMPLE)
    path.write_text(EXAMPLE.replace("weight: 80", "weight: -80"))
    with pytest.raises(DeployFileError, match=rf"^{path}:6: deployments\[0\]\.versions\[0\]\.spec\.weight: "):
        read_deploy_file(path)
    path.write_bytes(b"deployments: []\n# caf\xe9\n")
    with pytest.raises(DeployFileError, match=r":2: the file is not valid UTF-8$"):
        read_deploy_file(str(path))


def test_format_field() -> None:
    assert format_field(()) == ""
    assert format_field(("deployments", 0, "versions", 12, "spec")) == "deployments[0].versions[12].spec"


def test_numbers_keep_the_type_they_were_written_with() -> None:
    text = EXAMPLE.replace("cpu: 1,", "cpu: 2,").replace(
        "max_batch_size: 32}", "max_batch_size: 32, max_latency_ms: 5}, resources: {cpu: 0.5}, mirror: 1"
    )
    spec1, spec2 = (v.spec for v in load_deploy_file(text).deployments[0].versions)
    assert (spec1.resources.cpu, type(spec1.resources.cpu)) == (2, int)
    assert (spec2.resources.cpu, spec2.batching.max_latency_ms) == (0.5, 5)
    assert type(spec2.batching.max_latency_ms) is int
    assert (spec2.mirror, spec2.mirror_fraction) == (1, 1.0)
    written_as_float = load_deploy_file(text.replace("cpu: 2,", "cpu: 2.0,")).deployments[0]
    assert type(written_as_float.versions[0].spec.resources.cpu) is float
    assert written_as_float.versions[0].spec == spec1  # 2 == 2.0: the spelling is no change
    assert '"cpu":2,' in spec1.model_dump_json()  # nor does JSON turn it into 2.0


@pytest.mark.parametrize(
    ("written", "field"),
    [
        ("resources: {cpu: true}", "resources.cpu"),
        ("probes: {startup: {period_s: true}}", "probes.startup.period_s"),
        (
            "mirror: 0.5, server: {max_queue: 4}, probes: {liveness: {timeout_s: false}}",
            "probes.liveness.timeout_s",
        ),
    ],
)
def test_true_and_false_are_not_numbers(written: str, field: str) -> None:
    text = EXAMPLE.replace("weight: 20,", f"weight: 20, {written},")
    with pytest.raises(DeployFileError) as caught:
        load_deploy_file(text, "deploy.yaml")
    [problem] = caught.value.errors
    assert problem.field == f"deployments[0].versions[1].spec.{field}"
    assert problem.line == 8
    assert "true" in problem.message.lower() or "false" in problem.message


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("version: v1", 'version: "v1\\n"', "deployments[0].versions[0].version"),
        ("project: mail", 'project: "mail\\n"', "deployments[0].project"),
        ("memory: 1Gi", 'memory: "1Gi\\n"', "deployments[0].versions[0].spec.resources.memory"),
        ("cpu: 1,", 'cpu: "1\\n",', "deployments[0].versions[0].spec.resources.cpu"),
    ],
)
def test_a_trailing_newline_is_not_part_of_a_valid_value(old: str, new: str, field: str) -> None:
    assert old in EXAMPLE
    with pytest.raises(DeployFileError) as caught:
        load_deploy_file(EXAMPLE.replace(old, new, 1))
    assert [problem.field for problem in caught.value.errors] == [field]
