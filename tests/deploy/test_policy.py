"""What a deploy file may ask of the control plane: registry references only, no variable that
steers the replica's interpreter, unless the control plane was started allowing them."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.cli.main import _is_ref
from modelyard.control.settings import ControlSettings
from modelyard.deploy.file import DeployFileError, DeployFileProblem, load_deploy_file
from modelyard.deploy.policy import DeployPolicy, denied_env, is_registry_reference

FILE = """\
deployments:
- project: mail
  model: spam
  versions:
  - version: v1
    spec:
      uri: {uri}
      weight: 1
      server:
        env: {{{env}}}
"""
SPEC = "deployments[0].versions[0].spec"


def problems(
    uri: str = "spam@production", env: str = "", policy: DeployPolicy | None = None
) -> list[DeployFileProblem]:
    text = FILE.format(uri=uri, env=env)
    try:
        load_deploy_file(text, "deploy.yaml", policy=policy or DeployPolicy())
    except DeployFileError as exc:
        return exc.errors
    return []


@pytest.mark.parametrize(
    "name",
    ["PYTHONWARNINGS", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONUSERBASE", "pythonpath",
     "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "DYLD_INSERT_LIBRARIES", "BROWSER", "PATH", "HOME",
     "BASH_ENV", "PERL5OPT", "NODE_OPTIONS", "JAVA_TOOL_OPTIONS", "PIP_INDEX_URL", "GIT_SSH_COMMAND"],
)  # fmt: skip
def test_interpreter_control_variables_are_refused_naming_the_field(name: str) -> None:
    assert denied_env(name)
    [problem] = problems(env=f"{name}: x")
    assert (problem.line, problem.field) == (10, f"{SPEC}.server.env.{name}")
    assert f"--allow-env {name}" in problem.message


@pytest.mark.parametrize(
    "name",
    ["OPENSSL_CONF", "OPENSSL_ENGINES", "OPENSSL_MODULES", "GCONV_PATH", "OMP_TOOL_LIBRARIES", "LOCPATH",
     "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF", "LOCALDOMAIN", "RES_OPTIONS"],
)  # fmt: skip
def test_variables_that_make_a_library_load_code_or_redirect_are_refused(name: str) -> None:
    [problem] = problems(env=f"{name}: /tmp/x")
    assert problem.field == f"{SPEC}.server.env.{name}"
    assert f"--allow-env {name}" in problem.message


@pytest.mark.parametrize(
    "name",
    ["MODELYARD_TOKEN", "MODELYARD_API_KEY", "MODELYARD_MODEL_CONTROL_TOKEN", "MODELYARD_PARENT_PID",
     "MODELYARD_SOMETHING_NEW", "modelyard_token", "modelyard_control_url"],
)  # fmt: skip
def test_modelyard_credentials_and_controls_are_refused(name: str) -> None:
    [problem] = problems(env=f"{name}: x")
    assert problem.field == f"{SPEC}.server.env.{name}"
    assert "modelyard credential or control variable" in problem.message
    assert f"--allow-env {name}" in problem.message
    policy = DeployPolicy.from_settings(ControlSettings(allowed_env=[name]))
    assert problems(env=f"{name}: x", policy=policy) == []


def test_the_attack_of_the_probe_is_refused_whole() -> None:
    # PYTHONWARNINGS makes the interpreter import a module that reads BROWSER and runs it.
    env = "PYTHONWARNINGS: 'ignore::antigravity.x', BROWSER: 'sh -c \"touch /tmp/pwned\" #%s'"
    assert [p.field for p in problems(env=env)] == [
        f"{SPEC}.server.env.PYTHONWARNINGS",
        f"{SPEC}.server.env.BROWSER",
    ]


@pytest.mark.parametrize(
    "name",
    ["OMP_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "TZ", "LANG", "MALLOC_CONF", "OMP_TOOL", "TMPDIR",
     "MODELYARD_CONTROL_URL", "MODELYARD_REGISTRY_URL", "MODELYARD_HOME", "MODELYARD_REGISTRY_DB",
     "MODELYARD_ARTIFACTS"],
)  # fmt: skip
def test_ordinary_variables_pass(name: str) -> None:
    assert not denied_env(name)
    assert problems(env=f"{name}: '1'") == []


def test_an_admin_allows_a_variable_by_its_exact_name() -> None:
    policy = DeployPolicy.from_settings(ControlSettings(allowed_env=["PYTHONPATH"]))
    assert problems(env="PYTHONPATH: /opt/lib", policy=policy) == []
    [refused] = problems(env="PYTHONPATH: /opt/lib, PYTHONSTARTUP: x.py", policy=policy)
    assert refused.field == f"{SPEC}.server.env.PYTHONSTARTUP"
    assert [p.field for p in problems(env="pythonpath: x", policy=policy)] == [
        f"{SPEC}.server.env.pythonpath"
    ]


@pytest.mark.parametrize(
    "uri",
    [
        "models/spam.py:Spam",
        "/etc/passwd",
        "dist/spam-1.modelyard",
        "models/x.onnx",
        "model.pkl",
        "spam@latest",
        "spam/0",
    ],
)
def test_a_local_path_is_refused_unless_allowed(uri: str) -> None:
    [problem] = problems(uri=uri)
    assert (problem.line, problem.field) == (7, f"{SPEC}.uri")
    assert "--allow-local-paths" in problem.message
    assert problems(uri=uri, policy=DeployPolicy(allow_local_paths=True)) == []


def test_a_bare_name_is_a_path_and_the_error_says_what_to_write() -> None:
    [problem] = problems(uri="spam")
    assert "write spam/latest" in problem.message


@pytest.mark.parametrize("uri", ["spam@production", "spam/7", "spam/latest", "a.b-c_d@canary-2"])
def test_registry_references_pass(uri: str) -> None:
    assert problems(uri=uri) == []


@pytest.mark.parametrize(
    "uri",
    ["spam@production", "spam/7", "spam/latest", "spam/0007", "spam", "spam@latest", "spam/0",
     "spam/1234567890", "spam@Prod", "spam@prod/1", "a/b/c", "models/x.onnx", "x.py:M", "dir/x.py:M",
     "/abs/x.onnx", "spam\n/1", "spam/1\n", "spam@prod\n", ".hidden/1", "-x/1", "spam/\u0661"],
)  # fmt: skip
def test_the_policy_reads_a_uri_as_modelyard_serve_does(uri: str) -> None:
    assert is_registry_reference(uri) == _is_ref(uri)


def test_a_reference_that_names_a_file_here_is_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spam@production").write_text("a file `modelyard serve` would load")
    assert not is_registry_reference("spam@production")
    assert not _is_ref("spam@production")
    assert [p.field for p in problems(uri="spam@production")] == [f"{SPEC}.uri"]


def test_env_names_and_values_the_os_cannot_pass_are_refused() -> None:
    [bad_name] = problems(env="'A=B': x")
    assert (bad_name.field, bad_name.line) == (f"{SPEC}.server.env.A=B", 10)
    [nul] = problems(env='X: "a\\0b"')
    assert "NUL" in nul.message
    [newline] = problems(uri='"spam/1\\n"')
    assert newline.field == f"{SPEC}.uri"
