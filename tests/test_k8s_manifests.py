"""deploy/k8s: every object validates offline against the Kubernetes schemas (no cluster).

Each overlay is rendered with kustomize (``kubectl kustomize``, which embeds it) and
every object is checked with ``kubernetes-validate`` in strict mode (unknown fields
are errors). The base's own files are checked even where kubectl is missing. The
Envoy config in the base must be what ``tracker envoy-config`` renders today.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.32.0"  # what current managed clusters run; native gRPC probes are GA since 1.27
OVERLAYS = ["cpu", "gpu"]


def _named(docs: list[dict], kind: str, prefix: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix))


def _validate_all(docs: list[dict]) -> list[str]:
    kinds = []
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError
        kinds.append(doc["kind"])
    return kinds


def _kustomize(path: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (which embeds kustomize) is not installed: overlays cannot be rendered")
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, timeout=60)
    found = re.search(r"Kustomize Version: v(\d+)", version.stdout)
    if found is None or int(found.group(1)) < 5:  # `labels:` and `patches:` need kustomize 5
        pytest.skip(
            f"kubectl's kustomize is older than v5 ({version.stdout.strip()!r}): cannot render overlays"
        )
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_base_files_validate_offline() -> None:
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    docs = [
        d for f in kustomization["resources"] for d in yaml.safe_load_all((K8S / "base" / f).read_text()) if d
    ]
    kinds = _validate_all(docs)
    expected = ["Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"]
    assert sorted(kinds) == sorted([*expected, "Deployment", "Service"])


def test_validation_catches_a_bad_manifest() -> None:
    """The check can fail: a misspelt field is refused in strict mode."""
    doc = yaml.safe_load((K8S / "base" / "tracker-pdb.yaml").read_text())
    doc["spec"]["maxUnavailabel"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_validates(overlay: str) -> None:
    docs = _kustomize(K8S / "overlays" / overlay)
    kinds = _validate_all(docs)
    assert kinds.count("ConfigMap") == 2 and kinds.count("Deployment") == 2
    tracker = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "tracker")
    pod = tracker["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # Native gRPC probes on the health service; the drain pairing.
    assert container["readinessProbe"]["grpc"] == {"port": 50051, "service": "tracker.v1.Tracker"}
    assert "grpc" in container["livenessProbe"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    liveness = container["livenessProbe"]
    assert pre_stop + 10 < pod["terminationGracePeriodSeconds"]  # 10 s: `tracker serve`'s drain grace
    assert liveness["periodSeconds"] * liveness["failureThreshold"] > pod["terminationGracePeriodSeconds"]
    assert tracker["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    gpus = container["resources"].get("limits", {}).get("nvidia.com/gpu")
    assert (gpus == "1") == (overlay == "gpu")
    assert container["image"].startswith("ghcr.io/OWNER/rt-tracker:") and container["image"].endswith(overlay)
    options = _named(docs, "ConfigMap", "tracker-options")
    assert options["data"]["ENGINE"] == ("sam2" if overlay == "gpu" else "flow")
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "tracker_sessions_open"
    headless = _named(docs, "Service", "tracker-replicas")
    assert headless["spec"]["clusterIP"] == "None"
    envoy_cm = _named(docs, "ConfigMap", "envoy-config")
    assert envoy_cm["data"]["envoy.yaml"] == (K8S / "base" / "envoy.yaml").read_text()


def test_envoy_config_in_step_with_options_and_template(tmp_path: Path) -> None:
    """deploy/k8s/base/envoy.yaml is what its header's command renders now, with the options' limits."""
    committed = (K8S / "base" / "envoy.yaml").read_text()
    command = committed.splitlines()[1].lstrip("# ").split()
    assert command[:2] == ["tracker", "envoy-config"] and command[-2:] == ["--out", "FILE"]
    out = tmp_path / "envoy.yaml"
    args = [sys.executable, "-m", "tracker.cli", "--log-level", "WARNING", *command[1:-2], "--out", str(out)]
    subprocess.run(args, check=True, timeout=120, cwd=ROOT)  # also `envoy --mode validate`s it
    stale = "deploy/k8s/base/envoy.yaml is stale: re-run the command in its header"
    assert out.read_text() == committed, stale
    options = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["configMapGenerator"][0]
    literals = dict(item.split("=", 1) for item in options["literals"])
    assert command[command.index("--max-sessions") + 1] == literals["MAX_SESSIONS"]
    assert command[command.index("--idle-timeout-s") + 1] == literals["IDLE_TIMEOUT_S"]
    hpa = yaml.safe_load((K8S / "base" / "tracker-hpa.yaml").read_text())
    assert command[command.index("--expected-replicas") + 1] == str(hpa["spec"]["maxReplicas"])
