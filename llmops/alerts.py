"""Alerts: a canary rollback, a drift event and a failed nightly each post one Slack-compatible
message (`{"text": ...}`) to a webhook, through Prefect automations.

The automations are declared in prefect.yaml under `definitions: alerts:` (trigger, subject and
body, Prefect's templates); this module saves the webhook as a `CustomWebhookNotificationBlock`
and creates (or replaces) one automation per alert on the Prefect server at hand. `make ui` runs
it when `LLMOPS_ALERT_WEBHOOK_URL` is set; `llmops alerts --webhook URL` runs it against any
server (`PREFECT_API_URL`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import yaml

PREFECT_YAML = Path(__file__).resolve().parents[1] / "prefect.yaml"
BLOCK = "llmops-alerts"  # the notification block's name: one webhook for every alert
SLACK_JSON = {"text": "*{{subject}}*\n{{body}}"}  # Slack's incoming-webhook shape


def alert_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The alerts declared in prefect.yaml, each checked to have its parts."""
    specs = (yaml.safe_load(path.read_text()).get("definitions") or {}).get("alerts") or []
    for spec in specs:
        missing = {"name", "trigger", "subject", "body"} - set(spec)
        if missing:
            raise ValueError(f"alert {spec.get('name', '?')!r} in {path} lacks {sorted(missing)}")
    return specs


async def install_alerts(url: str, specs: list[dict[str, Any]]) -> list[str]:
    """Save the webhook block and create each alert's automation, replacing one of the same
    name (running it twice leaves one of each); the names created."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger

    block = CustomWebhookNotificationBlock(name="llmops", url=url, json_data=SLACK_JSON)
    block_id: UUID = await block.save(BLOCK, overwrite=True)
    async with get_client() as client:
        for spec in specs:
            for old in await client.read_automations_by_name(spec["name"]):
                await client.delete_automation(old.id)
            action = SendNotification(
                block_document_id=block_id, subject=spec["subject"], body=spec["body"]
            )
            automation = AutomationCore(
                name=spec["name"],
                description=spec.get("description", ""),
                enabled=spec.get("enabled", True),
                trigger=EventTrigger(**spec["trigger"]),
                actions=[action],
            )
            await client.create_automation(automation)
    return [spec["name"] for spec in specs]
