"""Where a panel's command goes: the engine in this kernel when it runs the deployment, else the store's queue.

An engine in another process (``workbench engine``) picks queued commands up
within a second; the panel says which path was taken.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ACTOR = "panel"


def send(engine: Any, store: Any, command: str, deployment_id: str | None = None,
         args: Mapping[str, Any] | None = None) -> str:
    """Run `command` now in `engine` if it holds the deployment, else queue it; return what happened."""
    args = dict(args or {})
    local = engine is not None and (deployment_id is None or deployment_id in engine.deployments)
    if not local:
        cid = store.submit_command(command, deployment_id, args, actor=ACTOR)
        return f"queued command #{cid} ({command}); a running engine picks it up within a second"
    if command == "emergency_stop":
        report = engine.emergency_stop(args.get("reason", "emergency stop from panel"), actor=ACTOR)
        if store.deployments(status=("active", "paused")):  # deployments run by another engine
            store.submit_command("emergency_stop", None, args, actor=ACTOR)
        closed = sum(len(r.get("closed", [])) for r in report.values())
        return f"emergency stop: {len(report)} deployment(s) stopped, {closed} position(s) closed"
    if command in ("stop", "pause", "resume", "close_position", "enable_symbol", "disable_symbol"):
        result = engine.execute(command, deployment_id, args, ACTOR)
        if command == "close_position":
            return f"{args['symbol']}: {'closed' if result == 'closed' else 'no position to close'}"
    else:
        cid = store.submit_command(command, deployment_id, args, actor=ACTOR)
        return f"queued command #{cid} ({command})"
    return f"{command}: done"
