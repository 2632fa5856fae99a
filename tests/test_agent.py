"""The agent's look (SPEC §14.3): a stat-level fingerprint, and what counts as a change."""

from __future__ import annotations

import json
import os

from hermes_tasks import agent, inventory


def setup(tmp_path):
    home, scandir = tmp_path / "home", tmp_path / "scan"
    (home / "profiles" / "alice").mkdir(parents=True)
    (home / "profiles" / "alice" / "SOUL.md").write_text("soul\n")
    (home / "profiles" / "alice" / "gateway_state.json").write_text(
        json.dumps({"desired_state": "running", "gateway_state": "running"}))
    (scandir / "gateway-alice" / "supervise").mkdir(parents=True)
    (scandir / "gateway-alice" / "supervise" / "status").write_bytes(b"\0" * 35)
    cfg = inventory.load(None, [f"hermes_home={home}", f"scandir={scandir}"], environ={})
    return cfg, home, scandir


def replace(path, data: bytes):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_what_moves_the_agent_and_what_does_not(tmp_path):
    cfg, home, scandir = setup(tmp_path)
    watch = agent.Watch()
    now = agent.fingerprint(cfg)
    assert watch.moved(cfg, now)  # the first look always converges
    watch.remember(cfg, now)
    assert not watch.moved(cfg, agent.fingerprint(cfg))
    state = home / "profiles" / "alice" / "gateway_state.json"
    # the gateway rewrites its own state (platforms, agents): no intent changed
    replace(state, json.dumps({"desired_state": "running", "gateway_state": "running",
                               "active_agents": 3}).encode())
    assert not watch.moved(cfg, agent.fingerprint(cfg))
    # an intent recorded by any host
    replace(state, json.dumps({"desired_state": "stopped"}).encode())
    assert watch.moved(cfg, agent.fingerprint(cfg))
    watch.remember(cfg, agent.fingerprint(cfg))
    for change in (lambda: (home / "profiles" / "alice" / ".env").write_text("A=1\n"),
                   lambda: (home / "profiles" / "alice" / agent.RESTART_REQUEST).write_text(""),
                   lambda: replace(scandir / "gateway-alice" / "supervise" / "status",
                                   b"\1" * 35),
                   lambda: (home / "profiles" / "bob").mkdir()):
        change()
        assert watch.moved(cfg, agent.fingerprint(cfg))
        watch.remember(cfg, agent.fingerprint(cfg))
    assert agent.requests(cfg) == ["alice"]
    assert agent.consume(cfg, "alice") and agent.requests(cfg) == []


def test_a_request_planted_as_a_symlink_is_removed_not_followed(tmp_path):
    cfg, home, _ = setup(tmp_path)
    target = tmp_path / "precious"
    target.write_text("keep\n")
    (home / "profiles" / "alice" / agent.RESTART_REQUEST).symlink_to(target)
    assert agent.requests(cfg) == ["alice"]
    assert agent.consume(cfg, "alice")
    assert target.read_text() == "keep\n"
    assert not os.path.lexists(home / "profiles" / "alice" / agent.RESTART_REQUEST)


def test_every_pass_rewrites_the_metrics_textfile(tmp_path):
    """SPEC §14: with metrics_textfile set, the agent writes it on every pass, also when
    nothing moved (a look that converges nothing still refreshes uptime and restarts)."""
    from prometheus_client.parser import text_string_to_metric_families

    cfg, home, _ = setup(tmp_path)
    out = tmp_path / "textfile" / "hermes.prom"
    out.parent.mkdir()
    cfg = inventory.load(None, [f"hermes_home={home}", f"scandir={cfg.scandir}",
                                f"metrics_textfile={out}"], environ={})
    watch = agent.Watch()
    watch.remember(cfg, agent.fingerprint(cfg))  # nothing moved since: no reconcile
    warnings: list[str] = []
    assert agent.tick(cfg, watch, warnings.append) is False
    text = out.read_text()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert "hermes_tasks_desired_running" in names, text
    assert 'profile="alice"' in text and not warnings
    out.write_text("stale\n")
    agent.tick(cfg, watch, warnings.append)
    again = out.read_text()
    assert "stale" not in again and 'profile="alice"' in again


def test_a_metrics_textfile_in_a_directory_others_write_is_refused(tmp_path):
    """Root's writer never goes through a directory another user can write (a textfile path
    set below the volume could otherwise be redirected): one warning, nothing written."""
    from hermes_tasks import metrics

    cfg, home, _ = setup(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    cfg = inventory.load(None, [f"hermes_home={home}", f"scandir={cfg.scandir}",
                                f"metrics_textfile={shared}/hermes.prom"], environ={})
    warnings: list[str] = []
    metrics.publish(cfg, warnings.append)
    assert not (shared / "hermes.prom").exists()
    assert len(warnings) == 1 and "metrics_textfile" in warnings[0], warnings
