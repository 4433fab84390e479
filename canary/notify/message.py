"""Payloads for each channel, built from a Notification with no I/O (so tests pin them exactly).

**Slack** gets Block Kit: a header with an emoji per event, a section naming the model, the
canary version and the champion, the reason, the evidence in words for a rollback
(``errors (group b): canary 2.1% vs tolerance 1.5%, 95% interval [1.6%, 2.7%], e-value 41 ≥
20``), where the model came from, a link to the status page and a context line with the
rollout id and the time. A plain ``text`` fallback always goes with it: it is what phone
notifications and screen readers show. Text from outside (reasons, dataset names) is escaped
so it cannot form Slack links or mentions.

**Webhook** receivers get a stable JSON document, version ``schema_version`` (now 1). Fields
are only ever added within a version; a removal or change of meaning bumps it::

    {
      "schema_version": 1,
      "source": "canary",
      "event": "rolled_back",          # started advanced paused resumed promoted
                                       # rolled_back aborted rejected failed
      "dedupe_key": "r-42/rolled_back/2/7",   # the same for a redelivery: dedupe on it
      "rollout_id": "r-42",
      "model": "credit-risk",
      "version": "7",
      "champion_version": "6",         # or null
      "step": 2,                        # ramp step (0: before the first)
      "canary_weight": 5.0,             # percent of traffic on the canary
      "reason": "errors regressed",
      "time": "2024-05-01T12:00:00Z",   # UTC, and the same instant in epoch seconds:
      "timestamp": 1714564800.0,
      "summary": "Rolled back: credit-risk version 7 ...",   # one plain-text paragraph
      "breaches": [{
        "metric": "errors", "slice_by": "group", "slice": "b",      # slice fields or null
        "estimate": 0.021, "interval": [0.016, 0.027], "confidence": 0.95,
        "baseline": 0.01, "limit": 0.015, "unit": "fraction",       # fraction|seconds|number
        "e_value": 41.0, "threshold": 20.0,                         # e_value may be "inf"
        "description": "errors (group b): canary 2.1% vs ..."
      }],
      "provenance": {"run_id": "ab12...", "datasets": [{"name", "digest", "context"}]},  # or null
      "status_url": "https://..."       # or null
    }
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from canary.notify.base import Breach, DatasetRef, Notification, Provenance, json_number

SCHEMA_VERSION = 1

EMOJI = {
    "started": ":rocket:",
    "advanced": ":arrow_up:",
    "paused": ":double_vertical_bar:",
    "resumed": ":arrow_forward:",
    "promoted": ":white_check_mark:",
    "rolled_back": ":rotating_light:",
    "aborted": ":octagonal_sign:",
    "rejected": ":no_entry:",
    "failed": ":x:",
}

TITLES = {
    "started": "Canary started",
    "advanced": "Canary advanced",
    "paused": "Rollout paused",
    "resumed": "Rollout resumed",
    "promoted": "Promoted",
    "rolled_back": "Rolled back",
    "aborted": "Aborted",
    "rejected": "Rejected",
    "failed": "Rollout failed",
}

# Slack's limits: header text 150 characters, section text 3000.
_HEADER_MAX = 150
_SECTION_MAX = 3000


# --- numbers in words ----------------------------------------------------------------------


def format_value(value: float, unit: str) -> str:
    """``0.021`` -> ``2.1%`` (fraction), ``0.25`` -> ``250 ms`` (seconds), else 3 digits;
    an unbounded end of an interval is ``∞``."""
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if unit == "fraction":
        percent = value * 100
        if percent == 0:
            return "0%"
        if abs(percent) >= 1:
            return f"{percent:.1f}%"
        return f"{percent:.2g}%"
    if unit == "seconds":
        if abs(value) < 0.01:
            return f"{value * 1000:.1f} ms"
        if abs(value) < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value:.2f} s"
    return f"{value:.3g}"


def format_e_value(value: float) -> str:
    """Evidence at a glance: ``41``, ``3.2``, ``1.2e+06``, ``∞``."""
    if math.isinf(value):
        return "∞"
    if value >= 1e6:
        return f"{value:.2g}"
    if value >= 10:
        return f"{value:.0f}"
    return f"{value:.2g}"


def describe_breach(breach: Breach) -> str:
    """``errors (group b): canary 2.1% vs baseline 1.0% (tolerance 1.5%), 95% interval
    [1.6%, 2.7%], e-value 41 ≥ 20``: what regressed, by how much, and how sure."""
    unit = breach.unit
    where = breach.metric
    if breach.slice is not None:
        where += f" ({breach.slice_by} {breach.slice})" if breach.slice_by else f" ({breach.slice})"
    compared = f"canary {format_value(breach.estimate, unit)}"
    if breach.baseline is not None and breach.limit is not None:
        compared += (
            f" vs baseline {format_value(breach.baseline, unit)}"
            f" (tolerance {format_value(breach.limit, unit)})"
        )
    elif breach.baseline is not None:
        compared += f" vs baseline {format_value(breach.baseline, unit)}"
    elif breach.limit is not None:
        compared += f" vs tolerance {format_value(breach.limit, unit)}"
    level = f"{breach.confidence * 100:g}% interval" if breach.confidence else "interval"
    lo, hi = breach.interval
    interval = f"{level} [{format_value(lo, unit)}, {format_value(hi, unit)}]"
    evidence = f"e-value {format_e_value(breach.e_value)}"
    if breach.threshold is not None:
        evidence += f" ≥ {breach.threshold:g}"
    return f"{where}: {compared}, {interval}, {evidence}"


def describe_dataset(dataset: DatasetRef) -> str:
    """``trained on dataset credit (digest 1a2b3c)``, or ``evaluation dataset holdout (...)``."""
    kind = (
        "trained on dataset"
        if dataset.context in (None, "training")
        else (f"{dataset.context} dataset")
    )
    digest = f" (digest {dataset.digest})" if dataset.digest else ""
    return f"{kind} {dataset.name}{digest}"


def describe_provenance(provenance: Provenance) -> str:
    """``run ab12cd, trained on dataset credit (digest 1a2b3c)``."""
    parts = [f"run {provenance.run_id}"] if provenance.run_id else []
    parts += [describe_dataset(d) for d in provenance.datasets]
    return ", ".join(parts)


def title(n: Notification) -> str:
    """``Rolled back: credit-risk version 7``."""
    return f"{TITLES[n.event]}: {n.model} version {n.version}"


def _where(n: Notification) -> str:
    if n.step == 0 and n.weight == 0:
        return ""
    if n.weight > 0:
        return f"step {n.step}, {n.weight:g}% of traffic on the canary"
    return f"step {n.step}"


def iso_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def summary(n: Notification) -> str:
    """One plain-text paragraph with everything that matters: the fallback everywhere."""
    champion = f" (champion: version {n.champion_version})" if n.champion_version else ""
    sentences = [f"{title(n)}{champion}."]
    where = _where(n)
    if where:
        sentences.append(f"{where[0].upper()}{where[1:]}.")
    if n.reason:
        sentences.append(f"Reason: {n.reason.rstrip('.')}.")
    sentences += [f"{describe_breach(b)}." for b in n.breaches]
    if n.provenance is not None and (n.provenance.run_id or n.provenance.datasets):
        text = describe_provenance(n.provenance)
        sentences.append(f"{text[0].upper()}{text[1:]}.")
    sentences.append(f"Rollout {n.rollout_id}.")
    return " ".join(sentences)


# --- Slack ---------------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Slack's three control characters, so outside text cannot form links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(markdown: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(markdown, _SECTION_MAX)}}


def slack_payload(n: Notification) -> dict[str, Any]:
    """A Slack incoming-webhook message: Block Kit blocks plus the plain ``text`` fallback."""
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _clip(f"{EMOJI[n.event]} {title(n)}", _HEADER_MAX),
                "emoji": True,
            },
        }
    ]
    lines = [f"*Model* {slack_escape(n.model)}  ·  *Canary* version {n.version}"]
    lines[0] += (
        f"  ·  *Champion* version {n.champion_version}"
        if n.champion_version
        else "  ·  no champion"
    )
    where = _where(n)
    if where:
        lines.append(f"{where[0].upper()}{where[1:]}")
    blocks.append(_section("\n".join(lines)))
    if n.reason:
        blocks.append(_section(f"*Reason:* {slack_escape(n.reason)}"))
    if n.breaches:
        evidence = "\n".join(f"• {slack_escape(describe_breach(b))}" for b in n.breaches)
        blocks.append(_section(f"*Evidence*\n{evidence}"))
    if n.provenance is not None and (n.provenance.run_id or n.provenance.datasets):
        text = slack_escape(describe_provenance(n.provenance))
        blocks.append(_section(f"*Provenance:* {text[0].upper()}{text[1:]}"))
    if n.status_url is not None:
        blocks.append(_section(f"<{n.status_url}|Rollout status page>"))
    # Slack shows this in each reader's own time zone; the fallback is UTC.
    stamp = f"<!date^{int(n.at)}^{{date_short_pretty}} {{time}}|{iso_time(n.at)}>"
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"rollout `{n.rollout_id}`  ·  {stamp}"}],
        }
    )
    return {"text": slack_escape(summary(n)), "blocks": blocks}


# --- generic webhook -----------------------------------------------------------------------


def webhook_payload(n: Notification) -> dict[str, Any]:
    """The documented webhook document (see the module docstring)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "source": "canary",
        "event": n.event,
        "dedupe_key": n.dedupe_key,
        "rollout_id": n.rollout_id,
        "model": n.model,
        "version": n.version,
        "champion_version": n.champion_version,
        "step": n.step,
        "canary_weight": float(n.weight),
        "reason": n.reason,
        "time": iso_time(n.at),
        "timestamp": n.at,
        "summary": summary(n),
        "breaches": [
            {
                "metric": b.metric,
                "slice_by": b.slice_by,
                "slice": b.slice,
                "estimate": json_number(b.estimate),
                "interval": [json_number(b.interval[0]), json_number(b.interval[1])],
                "confidence": b.confidence,
                "baseline": b.baseline,
                "limit": b.limit,
                "unit": b.unit,
                "e_value": json_number(b.e_value),
                "threshold": b.threshold,
                "description": describe_breach(b),
            }
            for b in n.breaches
        ],
        "provenance": None
        if n.provenance is None
        else {
            "run_id": n.provenance.run_id,
            "datasets": [
                {"name": d.name, "digest": d.digest, "context": d.context}
                for d in n.provenance.datasets
            ],
        },
        "status_url": n.status_url,
    }
