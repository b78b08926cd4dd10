"""Packaging: one pin list, extras, and a bare install that serves `flow` without torch or onnxruntime."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tracker.engines import availability
from tracker.engines.availability import EngineRequirement

ROOT = Path(__file__).resolve().parents[1]
BARE_INSTALL_LIMIT_MIB = 640  # the target for the client library + flow engine
HEAVY = ("torch", "torchvision", "onnxruntime", "onnx", "pycocotools", "sam2", "simpleitk")


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not NAME==VERSION"
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[tuple[str, Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [("dependencies", Requirement(r)) for r in project["dependencies"]]
    for extra, reqs in project["optional-dependencies"].items():
        found += [(f"[{extra}]", Requirement(r)) for r in reqs]
    return found


def test_pyproject_agrees_with_the_constraints_file():
    pins = _constraints()
    checked = 0
    for where, req in _requirements():
        name = canonicalize_name(req.name)
        if name == "rt-tracker":  # [all] names the other extras
            continue
        assert name in pins, f"{req.name} ({where}) has no pin in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside {where}'s range {req.specifier}"
        )
        for spec in req.specifier:
            if spec.operator == "==":
                assert spec.version == pins[name], f"{req.name}: pyproject {spec}, constraints {pins[name]}"
        checked += 1
    assert checked >= 25


def test_extras_and_bare_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"io", "sam2", "onnx", "overseer", "bench", "all", "dev"} <= set(extras)
    assert "sam2" in {canonicalize_name(Requirement(r).name) for r in extras["sam2"]}
    bare = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert not bare & set(HEAVY), f"heavy packages in the bare install: {bare & set(HEAVY)}"
    (all_extra,) = extras["all"]
    assert set(Requirement(all_extra).extras) == set(extras) - {"all", "dev"}


def test_makefile_installs_everything_with_the_constraints_file():
    recipe = (ROOT / "Makefile").read_text()
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert len(installs) >= 4
    for line in installs:
        assert "-c constraints.txt" in line, line
    order = [next(i for i, line in enumerate(installs) if key in line) for key in ("torch", "sam2", ".[all")]
    assert order == sorted(order), "torch, then sam2 built against it, then the package"
    sam2_line = installs[order[1]]
    assert "SAM2_BUILD_CUDA=0" in sam2_line and "--no-build-isolation" in sam2_line
    assert re.search(r"-e '\.\[all(,dev)?\]'", installs[order[2]])
    assert "$(STAMP): pyproject.toml constraints.txt" in recipe, "a changed pin must reinstall"


def test_select_leaves_out_an_engine_without_its_libraries(monkeypatch):
    absent = EngineRequirement(("no_such_module_for_this_test",), "pip install x")
    monkeypatch.setitem(availability.REQUIREMENTS, "sam2", absent)
    selection = availability.select(["flow", "sam2"])
    assert selection.serve == ["flow"]
    assert "no_such_module_for_this_test" in selection.absent["sam2"]
    with pytest.raises(ValueError, match="cannot serve engine 'sam2' \\(the default\\)"):
        availability.select(["sam2", "flow"])
    with pytest.raises(ValueError, match="unknown engine 'nope'"):
        availability.select(["flow", "nope"])


def test_flow_needs_nothing_and_missing_modules_name_their_extra():
    assert availability.check("flow").available
    assert availability.library_versions()["grpcio"]
    exc = ModuleNotFoundError("No module named 'SimpleITK'", name="SimpleITK")
    assert "rt-tracker[io]" in availability.missing_module_message(exc)
    assert availability.missing_module_message(ModuleNotFoundError("x", name="not_ours")) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _du_mib(path: Path) -> float:
    """Disk space taken (allocated blocks, as `du` counts), in MiB."""
    total = sum(p.lstat().st_blocks * 512 for p in path.rglob("*") if not p.is_symlink())
    return total / 2**20


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_bare_install_serves_flow_in_a_fresh_venv(tmp_path):
    """`pip install .` (with the constraints) in a new venv: no torch/onnxruntime, flow serves a session."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("tracker", "engines", "proto"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    py = venv / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", "-c", str(src / "constraints.txt"), str(src)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    listed = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, env=env, check=True
    )
    installed = {canonicalize_name(d["name"]) for d in json.loads(listed.stdout)}
    assert "rt-tracker" in installed
    assert not installed & set(HEAVY), f"the bare install pulled in {sorted(installed & set(HEAVY))}"
    size_mib = _du_mib(venv)
    print(f"bare install: {size_mib:.0f} MiB in {venv}")
    assert size_mib <= BARE_INSTALL_LIMIT_MIB, f"bare install takes {size_mib:.0f} MiB"

    port = _free_port()
    # sam2 is asked for too: it must be left out with a reason, and flow served
    server = subprocess.Popen(
        [str(venv / "bin" / "tracker"), "serve", "--engine", "flow,sam2", "--port", str(port)],
        cwd=tmp_path,  # not the repository: the installed package must be what runs
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        client = subprocess.run(
            [str(py), str(ROOT / "tests" / "bare_install_session.py"), f"127.0.0.1:{port}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.terminate()
        log, _ = server.communicate(timeout=30)
    assert client.returncode == 0, client.stdout + client.stderr + log
    seen = json.loads(client.stdout.strip().splitlines()[-1])
    assert seen["engines"] == ["flow"]
    assert seen["answers"] == list(range(seen["frames_sent"]))
    assert "OK" in seen["statuses"]
    assert seen["heavy_modules_importable"] == []
    assert "engine sam2 is not served: missing Python package(s) torch" in log
