"""The package works installed from a built wheel, not only from a checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_templates_and_inventory_and_runs(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
                    str(REPO)], check=True)
    wheel = next(dist.glob("hermes_tasks-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("hermes_tasks/templates/gateway/run.j2", "hermes_tasks/templates/gateway/finish.j2",
                   "hermes_tasks/templates/gateway/log/run.j2", "hermes_tasks/inventory/hosts.yml",
                   "hermes_tasks/templates/registrar/run.j2"):
        assert needed in names
    venv = tmp_path / "venv"
    # --system-site-packages: reuse the already installed dependencies, no download needed.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(p for p in sys.path if "site-packages" in p)}
    help_ = subprocess.run([venv / "bin" / "hermes-tasks", "--list"], cwd=outside, env=env,
                           capture_output=True, text=True)
    assert help_.returncode == 0, help_.stderr
    assert "gateway.restart" in help_.stdout and "profile.create" in help_.stdout
    render = subprocess.run([venv / "bin" / "hermes-tasks", "slot.render", "alice"], cwd=outside,
                            env=env, capture_output=True, text=True)
    assert render.returncode == 0, render.stderr
    assert ('/command/s6-setuidgid hermes "$service_dir/data/own" hermes -p alice gateway '
            "run --replace") in render.stdout
    assert "==> gateway-alice/data/check (mode 0755) <==" in render.stdout
    assert "==> gateway-alice/data/own (mode 0755) <==" in render.stdout
    where = subprocess.run([venv / "bin" / "python", "-c",
                            "import hermes_tasks.render as r; print(r.templates_dir())"],
                           cwd=outside, env=env, capture_output=True, text=True)
    assert str(venv) in where.stdout, where.stdout + where.stderr
