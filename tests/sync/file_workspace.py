"""Two file systems, a PRM and a CRM, with their mappings: the engine's smallest real setup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from refsync.config import load_config
from refsync.state import StateStore
from refsync.sync.wiring import build_engine

__all__ = ["CONFIG", "CRM_MAPPING", "PRM_MAPPING", "customers_in_crm", "engine_for",
           "make_workspace", "quarantined_open_and_resolved", "read_jsonl", "with_crm_settings",
           "write_jsonl"]

PRM_MAPPING = """\
system: prm
object: leads
key_field: refsync_id
fields:
  partner_id: {remote: partner, rule: partner_owned}
  email: {remote: email, rule: partner_owned, transform: [email]}
  company: {remote: company, rule: partner_owned}
  status:
    remote: status
    rule: hub_wins
    values: {new: submitted, working: accepted, qualified: qualified, won: won, lost: lost,
             dup: duplicate, rejected: rejected, opportunity: opportunity, expired: expired}
  status_reason: {remote: reason, direction: out, rule: hub_wins}
"""

CRM_MAPPING = """\
system: crm
object: Lead
key_field: Refsync_Id
fields:
  email: {remote: Email, transform: [email]}
  company: {remote: Company}
  partner_id: {remote: Partner, rule: partner_owned}
  status:
    remote: Status
    rule: remote_wins
    values: {Open: submitted, Working: accepted, Qualified: qualified, Won: won, Lost: lost,
             out: {duplicate: Lost, rejected: Lost, opportunity: Qualified, expired: Lost}}
"""

CONFIG = """\
version: 1
state: {{url: "{url}"}}
systems:
  prm:
    connector: file
    role: prm
    settings: {{directory: prm}}
    streams:
      leads: {{object: leads, mapping: prm.yaml}}
  crm:
    connector: file
    role: crm
    settings: {{directory: crm, id_field: Id, modstamp_field: SystemModstamp}}
    streams:
      leads: {{object: Lead, mapping: crm.yaml}}
matching: {{keys: [email]}}
rules: {{protection_window_days: 90}}
"""


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` as JSON Lines (what the file connector reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a JSON Lines file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def engine_for(workspace: Path) -> Any:
    """The engine built from the workspace's config, and its state store (close it)."""
    loaded = load_config(workspace / "refsync.yaml", environ={})
    store = StateStore(loaded.config.state.url)
    return build_engine(loaded, store), store


def make_workspace(root: Path, state_url: str) -> Path:
    """Mappings, a config and three partner leads (two of them the same prospect) in ``root``."""
    (root / "prm.yaml").write_text(PRM_MAPPING)
    (root / "crm.yaml").write_text(CRM_MAPPING)
    (root / "refsync.yaml").write_text(CONFIG.format(url=state_url))
    write_jsonl(root / "prm" / "leads.jsonl", [
        {"id": "L1", "updated_at": "2026-01-01T10:00:00Z", "partner": "p-ana",
         "email": " Alice@Acme.com ", "company": "Acme", "status": "new"},
        {"id": "L2", "updated_at": "2026-01-01T10:00:00Z", "partner": "p-ben",
         "email": "bob@globex.com", "company": "Globex", "status": "new"},
        {"id": "L3", "updated_at": "2026-01-02T10:00:00Z", "partner": "p-ben",
         "email": "alice@acme.com", "company": "Acme Inc", "status": "new"},
    ])
    (root / "crm").mkdir()
    return root


def with_crm_settings(config: str, settings: str) -> str:
    """``config`` (the :data:`CONFIG` text, formatted) with more CRM connector settings."""
    return config.replace("modstamp_field: SystemModstamp}",
                          f"modstamp_field: SystemModstamp, {settings}}}")


def customers_in_crm(workspace: Path, config: str, account: dict[str, Any]) -> None:
    """Write ``config`` reading existing customers from the CRM's Account file, which holds
    ``account``."""
    (workspace / "refsync.yaml").write_text(config.replace(
        "rules: {protection_window_days: 90}",
        "rules: {protection_window_days: 90, customers_from: {system: crm, object: Account}}"))
    write_jsonl(workspace / "crm" / "Account.jsonl", [account])


def quarantined_open_and_resolved(state_url: str) -> tuple[int, int]:
    """Two writes quarantined by a run of their own, one of them since resolved: their ids
    (open, resolved)."""
    with StateStore(state_url) as store:
        run_id = store.start_run(trigger="manual", instance="earlier")
        with store.transaction() as tx:
            tx.quarantine([{
                "run_id": run_id, "system": "crm", "stream": "leads", "direction": "out",
                "external_id": external_id, "error_code": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Company]",
            } for external_id in ("open-one", "fixed-one")])
        store.finish_run(run_id, status="partial", counts={"quarantined": 2})
        rows = {row["external_id"]: row["id"] for row in store.list_quarantine()}
        with store.transaction() as tx:
            tx.resolve_quarantine([rows["fixed-one"]])
    return rows["open-one"], rows["fixed-one"]
