"""cluster.yaml and workers/ checked with Ray's own code, without a cloud.

`ray up` runs the same two steps on a config before it touches a provider:
``prepare_config`` (merge the provider's defaults, set up the node types) and
``validate_config`` (Ray's JSON schema plus its cross-field rules). Both are
called here on the AWS config and on its on-premises variant, uncommented the
way a user would. The runtime environment goes through the parser of
`ray job submit --runtime-env` and Ray's RuntimeEnv class, and its excludes
through the packager that builds the working_dir upload. No network, no cloud
calls; the one test that starts Ray binds it to 127.0.0.2 and is marked slow.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from zipfile import ZipFile

import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_YAML = ROOT / "cluster.yaml"
DOCKERFILE = ROOT / "workers" / "Dockerfile"
RUNTIME_ENV_YAML = ROOT / "workers" / "runtime_env.yaml"
CLUSTER_DOC = ROOT / "docs" / "CLUSTER.md"

CLOUD_BEGIN, CLOUD_END = "# ===== cloud: AWS (begin)", "# ===== cloud: AWS (end)"
ON_PREM_BEGIN, ON_PREM_END = "# ===== on-premises (begin)", "# ===== on-premises (end)"

# An ALL_CAPS word of three or more characters that is not a shell variable:
# neither read ($RAY_HEAD_IP, Ray's) nor set (RAY_AUTH_MODE=token).
PLACEHOLDER = re.compile(r"(?<![\w$])[A-Z][A-Z0-9_]{2,}(?![\w=])")


# ------------------------------------------------------------ helpers
def ray_prepare_and_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does to a config before any provider call.

    Ray keeps these two under `_private` and has moved them before; this is the
    one place that names them, so a Ray upgrade breaks one function.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def cluster_text() -> str:
    return CLUSTER_YAML.read_text()


def aws_variant(text: str) -> dict[str, Any]:
    """cluster.yaml as shipped: the AWS block live, the on-premises one commented."""
    return yaml.safe_load(text)


def on_prem_variant(text: str) -> dict[str, Any]:
    """cluster.yaml after following its own instructions for on-premises use."""
    return yaml.safe_load(on_prem_text(text))


def on_prem_text(text: str) -> str:
    """The AWS block dropped, the on-premises block uncommented.

    Uncommenting removes one level of `# `, what an editor's toggle-comment
    does; the block's own comments are written `# # ` so they stay comments.
    """
    lines, mode = [], "keep"
    for line in text.splitlines():
        if line.startswith(CLOUD_BEGIN):
            mode = "drop"
        elif line.startswith(ON_PREM_BEGIN):
            mode = "uncomment"
        elif line.startswith((CLOUD_END, ON_PREM_END)):
            mode = "keep"
        elif mode == "uncomment":
            assert line == "#" or line.startswith("# "), f"not a commented line: {line!r}"
            lines.append(line[2:])
        elif mode == "keep":
            lines.append(line)
    return "\n".join(lines)


def string_values(node: Any) -> list[str]:
    """Every string value in a parsed YAML tree (keys are Ray's and EC2's names)."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in string_values(v)]
    if isinstance(node, list):
        return [s for v in node for s in string_values(v)]
    return [node] if isinstance(node, str) else []


def placeholders_in(config: dict[str, Any]) -> set[str]:
    return {m for s in string_values(config) for m in PLACEHOLDER.findall(s)}


def documented_placeholders(text: str) -> set[str]:
    """Names in the header's placeholder table: `#   NAME   what to put there`."""
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    start = next(i for i, line in enumerate(header) if line.startswith("# Placeholders"))
    names = set()
    for line in header[start + 1 :]:
        m = re.match(r"#\s+([A-Z][A-Z0-9_]{2,})\s{2,}\S", line)
        if m:
            names.add(m.group(1))
    return names


def image_tag(image: str) -> str:
    assert ":" in image.rsplit("/", 1)[-1], f"{image} has no tag, which means :latest"
    return image.rsplit(":", 1)[1]


# ------------------------------------------------------------ cluster.yaml
def test_aws_config_passes_ray_validation() -> None:
    prepared = ray_prepare_and_validate(aws_variant(cluster_text()))

    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    workers = [t for name, t in types.items() if name != prepared["head_node_type"]]
    # trials never land on the head, and the worker pool can grow from nothing
    assert head["resources"].get("CPU") == 0
    assert workers and all(t["min_workers"] == 0 < t["max_workers"] for t in workers)
    assert all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in workers)


def test_ray_validation_catches_a_misspelt_key() -> None:
    """The check above can fail: Ray's schema refuses keys it does not know."""
    import jsonschema

    broken = aws_variant(cluster_text())
    # a typo that would otherwise drop the shared mount without a word
    broken["docker"]["run_option"] = broken["docker"].pop("run_options")
    with pytest.raises(jsonschema.ValidationError, match="run_option"):
        ray_prepare_and_validate(broken)


def test_on_prem_variant_passes_ray_validation() -> None:
    config = on_prem_variant(cluster_text())
    assert config["provider"]["type"] == "local"
    assert "available_node_types" not in config  # the local provider refuses them

    prepared = ray_prepare_and_validate(config)

    hosts = config["provider"]["worker_ips"]
    assert len(hosts) >= 1 and config["provider"]["head_ip"] not in hosts
    (node_type,) = prepared["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == len(hosts)
    # the container, code sync and setup are shared by both variants, not copied
    cloud = aws_variant(cluster_text())
    for key in ("docker", "file_mounts", "setup_commands", "worker_setup_commands"):
        assert config[key] == cloud[key], key


def test_a_comment_above_every_key() -> None:
    """Ray's example configs explain every key; so does ours, in both variants."""
    key = re.compile(r"^\s*(- )?[\"~A-Za-z_][^:#\s]*:(\s|$)")
    for text in (cluster_text(), on_prem_text(cluster_text())):
        above, bare, keys = "", [], 0
        for line in text.splitlines():
            if key.match(line):
                keys += 1
                if not above.lstrip().startswith("#"):
                    bare.append(line.strip())
            if line.strip():
                above = line
        assert keys > 20 and bare == []


def test_image_is_pinned_to_the_installed_ray() -> None:
    image = aws_variant(cluster_text())["docker"]["image"]
    tag = image_tag(image)
    assert image.startswith("rayproject/ray:")
    assert "latest" not in tag
    assert tag.split("-")[0] == ray.__version__, f"{image} is not Ray {ray.__version__}"
    assert "gpu" in tag.split("-") or any(p.startswith("cu") for p in tag.split("-"))


def test_worker_dockerfile_builds_from_the_cluster_image() -> None:
    froms = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), flags=re.M)
    assert froms == [aws_variant(cluster_text())["docker"]["image"]]


def test_worker_image_installs_the_project_pins() -> None:
    """What the Dockerfile feeds pip is pyproject.toml's list, Ray pinned to the image's Ray."""
    import tomllib

    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "workers" / "pinned_requirements.py"),
            str(ROOT / "pyproject.toml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert out == tomllib.load(f)["project"]["dependencies"]
    ray_pin = next(r for r in out if re.match(r"ray(\[.*\])?==", r))
    assert ray_pin.split("==")[1] == ray.__version__
    assert "pinned_requirements.py" in DOCKERFILE.read_text()


def test_every_placeholder_is_documented() -> None:
    text = cluster_text()
    used = placeholders_in(aws_variant(text)) | placeholders_in(on_prem_variant(text))
    documented = documented_placeholders(text)
    doc = CLUSTER_DOC.read_text()

    assert used, "no placeholders found: the scan is broken"
    assert used - documented == set(), "used in cluster.yaml, missing from its header"
    assert documented - used == set(), "in the header, used nowhere"
    assert {p for p in used if not re.search(rf"\b{p}\b", doc)} == set(), (
        "missing from docs/CLUSTER.md"
    )


def test_synced_checkout_is_what_setup_installs() -> None:
    config = aws_variant(cluster_text())
    assert ".gitignore" in config["rsync_filter"]
    (remote,) = [r for r, local in config["file_mounts"].items() if local in (".", "./")]
    assert any("pip install" in c and f"-e {remote}" in c for c in config["setup_commands"])


def test_every_node_runs_with_the_shared_token() -> None:
    """cotsweep's processes default to RAY_AUTH_MODE=token: the cluster must too."""
    config = aws_variant(cluster_text())
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    starts = [
        c
        for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"]
        if "ray start" in c
    ]
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token ray start" in c for c in starts)


def test_documented_sweep_dir_is_on_the_shared_mount() -> None:
    """Trial outputs go where every node's container sees the same files."""
    config = aws_variant(cluster_text())
    mounts = [
        o.split()[1].split(":") for o in config["docker"]["run_options"] if o.startswith("-v ")
    ]
    shared = [inside for outside, inside in mounts if outside == inside]
    assert shared, "no host path is mounted into the container at the same path"

    dirs = re.findall(r"cotsweep launch [^\n]*?--dir (\S+)", CLUSTER_DOC.read_text())
    assert dirs, "docs/CLUSTER.md shows no `cotsweep launch ... --dir`"
    assert all(any(d.startswith(s + "/") for s in shared) for d in dirs), dirs


# ------------------------------------------------------------ runtime_env.yaml
def load_runtime_env(working_dir: str) -> dict[str, Any]:
    """The runtime env as `ray job submit --runtime-env ... --working-dir DIR` builds it."""
    from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args

    return parse_runtime_env_args(runtime_env=str(RUNTIME_ENV_YAML), working_dir=working_dir)


def test_runtime_env_is_accepted_by_ray() -> None:
    from ray.runtime_env import RuntimeEnv

    env = RuntimeEnv(**load_runtime_env(str(ROOT)))

    assert env["working_dir"] == str(ROOT)
    assert env["env_vars"]["RAY_JOB_STOP_SIGNAL"] in ("SIGINT", "SIGTERM")
    assert int(env["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"]) > 3
    assert "working_dir" not in yaml.safe_load(RUNTIME_ENV_YAML.read_text())


def test_runtime_env_merges_with_what_the_driver_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray refuses a job's driver whose ray.init runtime_env repeats a job env var.

    Inside the job every variable of the runtime env is in the driver's
    environment; cotsweep.sweep.cluster.connect then passes its own set to
    ray.init, and Ray merges the two with this function.
    """
    from ray.runtime_env.runtime_env import _merge_runtime_env

    from cotsweep.sweep import cluster

    job_env = load_runtime_env(str(ROOT))
    for key, value in job_env["env_vars"].items():
        monkeypatch.setenv(key, value)
    driver_env = {"env_vars": {**cluster.ray_env(), **cluster._passthrough_env()}}

    assert _merge_runtime_env(job_env, driver_env) is not None, set(job_env["env_vars"]) & set(
        driver_env["env_vars"]
    )


def test_working_dir_upload_leaves_outputs_behind(tmp_path: Path) -> None:
    """Ray's own packager, fed this repo's .gitignore and the runtime env's excludes."""
    from ray._private.ray_constants import get_runtime_env_default_excludes
    from ray._private.runtime_env.packaging import create_package

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(ROOT / ".gitignore", checkout / ".gitignore")
    code = ["pyproject.toml", "src/cotsweep/cli.py", "sweeps/smoke.yaml", "conf/config.yaml"]
    outputs = [
        "runs/smoke/ledger.sqlite",
        "runs/smoke/trials/ab12/ckpt/last.pt",
        "outputs/2026-01-01/12-00-00/.hydra/config.yaml",
        "multirun/2026-01-01/0/result.json",
        "wandb/offline-run-1/run.wandb",
        ".venv/bin/python",
        ".git/HEAD",
        "scratch/ledger.sqlite-wal",
        "scratch/last.pt",
    ]
    for rel in code + outputs:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text("x")

    env = load_runtime_env(str(checkout))
    package = tmp_path / "working_dir.zip"
    create_package(
        env["working_dir"],
        package,
        include_gitignore=True,
        excludes=get_runtime_env_default_excludes() + env["excludes"],
    )
    uploaded = {n for n in ZipFile(package).namelist() if not n.endswith("/")}

    assert set(code) <= uploaded
    assert uploaded & set(outputs) == set()


# ------------------------------------------------------------ the job, for real
JOB_DRIVER = """
import json, os, sys, time
from pathlib import Path

import ray

from cotsweep.sweep import cluster

report = Path(sys.argv[1])
cluster.connect()  # as `cotsweep launch --address auto` joins: RAY_ADDRESS, its own env vars

@ray.remote(num_cpus=0)
def trial_env():
    return {k: os.environ.get(k) for k in ("HYDRA_FULL_ERROR", "RAY_AUTH_MODE")}

seen = {
    "driver_env": {k: os.environ.get(k) for k in ("RAY_JOB_STOP_SIGNAL", "PYTHONUNBUFFERED")},
    "trial_env": ray.get(trial_env.remote()),
    "files": sorted(str(p) for p in Path(".").rglob("*") if p.is_file()),
}
report.with_suffix(".ready").write_text(json.dumps(seen))
try:
    time.sleep(600)
except KeyboardInterrupt:
    # where cotsweep checkpoints its running trials
    report.write_text(json.dumps({**seen, "stopped_by": "SIGINT"}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="stops its Ray by /proc")
def test_job_with_runtime_env_reaches_trials_and_stops_like_ctrl_c(tmp_path: Path) -> None:
    """Submit a job with workers/runtime_env.yaml to a real Ray on 127.0.0.2.

    As on the cluster: Ray started by `ray start --head` with token
    authentication, and the driver joins through cotsweep's own connect(). The
    runtime env's variables reach the driver and the tasks it starts, its
    excludes keep outputs out of the upload, and `ray job stop` interrupts the
    driver with SIGINT, the signal cotsweep turns into "checkpoint and go back to
    pending". The head has a home of its own (the token lives in ~/.ray), its
    own temp dir and free ports: an embedded ray.init would take the dashboard
    agent's fixed port 52365, which any other Ray on 127.0.0.2 may hold, and then
    no job can be submitted to it.
    """
    from loopback_support import Machine, free_port

    checkout = tmp_path / "checkout"
    (checkout / "runs").mkdir(parents=True)
    shutil.copy(ROOT / ".gitignore", checkout / ".gitignore")
    (checkout / "driver.py").write_text(JOB_DRIVER)
    (checkout / "runs" / "old.pt").write_text("x")
    (checkout / "outputs").mkdir()
    (checkout / "outputs" / "log.txt").write_text("x")
    report = tmp_path / "report.json"
    head = Machine("head", "127.0.0.2", tmp_path / "home")
    (head.home / ".ray").mkdir()
    (head.home / ".ray" / "auth_token").write_text("cotsweep-test-" + "0" * 32)
    head.env["RAY_AUTH_MODE"] = "token"  # as cluster.yaml's `ray start` commands
    dashboard = free_port("127.0.0.1")

    script = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args
        from ray.job_submission import JobSubmissionClient

        client = JobSubmissionClient("http://127.0.0.1:{dashboard}")
        env = parse_runtime_env_args(runtime_env={str(RUNTIME_ENV_YAML)!r},
                                     working_dir={str(checkout)!r})
        for _ in range(120):  # the job agent comes up some seconds after ray start
            try:
                job = client.submit_job(entrypoint="python driver.py {report}", runtime_env=env)
                break
            except RuntimeError as e:
                if "No available agent" not in str(e):
                    raise
                time.sleep(1)
        else:
            sys.exit("the job agent never came up")
        ready = Path({str(report.with_suffix(".ready"))!r})
        deadline = time.time() + 240
        while not ready.exists():
            status = client.get_job_status(job)
            if status.is_terminal() or time.time() > deadline:
                sys.exit("job never got ready: " + str(status) + client.get_job_logs(job))
            time.sleep(0.5)
        client.stop_job(job)
        while not client.get_job_status(job).is_terminal():
            time.sleep(0.5)
        print(json.dumps({{"status": str(client.get_job_status(job))}}))
    """)
    try:
        flags = " ".join(head.ray_start_flags(dashboard_port=dashboard))
        head.run(
            f"ray start --head --node-ip-address=127.0.0.2 --port=0 --disable-usage-stats {flags}"
        )
        head.run(f"python -c {shlex.quote(script)}", timeout=300)
    finally:
        head.stop()

    assert report.exists(), "the driver never saw SIGINT"
    seen = json.loads(report.read_text())
    assert seen["stopped_by"] == "SIGINT"
    assert seen["driver_env"] == {"RAY_JOB_STOP_SIGNAL": "SIGINT", "PYTHONUNBUFFERED": "1"}
    assert seen["trial_env"] == {"HYDRA_FULL_ERROR": "1", "RAY_AUTH_MODE": "token"}
    assert seen["files"] == [".gitignore", "driver.py"]
