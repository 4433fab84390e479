"""The outbox: notifications are stored first and delivered by a background worker.

The rollout path never talks to Slack. It saves the transition and its notifications in one
store transaction (:meth:`Outbox.entries` builds what ``save`` takes), or records them right
after (:meth:`Outbox.record`), and wakes the worker; both cost one local database write.
The worker thread claims due entries, sends them, and records the outcome: sent, pending again
after an exponential backoff with jitter (spread out so a recovering endpoint is not hit by
every retry at once), or failed for good after ``max_attempts`` or an answer that retrying
cannot change. A hung endpoint only holds the worker for the sender's timeout.

On the daemon's side, a phase change and its announcement are one call::

    n = Notification.from_transition(rollout, record, sequence=revision + 1, breaches=...)
    revision = store.save(rollout, expected_revision=revision, transition=record,
                          notifications=Outbox.entries(n, channels_for(policy.notify, n.event)))
    outbox.wake()

with ``outbox = Outbox(store, EnvChannels(defaults=...)).start()`` once at start-up (the
defaults map ``CANARY_SLACK_WEBHOOK_URL`` to the settings' Slack URL when it is set).

Because entries live in the store, a restarted daemon resumes the pending ones, and since the
store refuses a dedupe key it already has, an event is never announced twice on a channel.
Delivery is at least once: a crash after Slack answered but before ``mark_sent`` (a window
of a few milliseconds) sends that one again once its claim lapses (webhook receivers get an
``Idempotency-Key`` to drop it; Slack's incoming webhooks take none). The other choice, at
most once, could lose a rollback alert, which is worse than a repeated one.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType

import httpx
from pydantic import SecretStr

from canary.core import names
from canary.errors import NotifyError, StoreError
from canary.log import get_logger
from canary.notify.base import DeliveryError, Notification, Notifier
from canary.notify.slack import SlackNotifier
from canary.notify.webhook import WebhookNotifier
from canary.store.base import OutboxEntry, OutboxItem, OutboxStore

log = get_logger(__name__)

Resolver = Callable[[str], Notifier | None]
"""Finds the notifier for a channel name, or None when the channel is not configured."""


class EnvChannels:
    """Resolves ``slack:ENV_NAME`` and ``webhook:ENV_NAME`` to notifiers.

    The URL is read from the environment (or ``defaults``, e.g. the settings' Slack URL) when
    a notification is first delivered on the channel, so the outbox only ever stores the
    variable's name. Notifiers are kept, with their HTTP connections, until :meth:`close`.
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        defaults: Mapping[str, str | SecretStr] | None = None,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._defaults = dict(defaults or {})
        self._timeout = timeout
        self._transport = transport
        self._notifiers: dict[str, Notifier] = {}
        self._lock = threading.Lock()

    def __call__(self, channel: str) -> Notifier | None:
        with self._lock:
            if channel in self._notifiers:
                return self._notifiers[channel]
            kind, _, env = channel.partition(":")
            if kind not in ("slack", "webhook") or not names.ENV_NAME.fullmatch(env):
                return None
            url = self._environ.get(env) or self._defaults.get(env)
            if not url:
                return None
            notifier: Notifier
            if kind == "slack":
                notifier = SlackNotifier(url, timeout=self._timeout, transport=self._transport)
            else:
                notifier = WebhookNotifier(url, timeout=self._timeout, transport=self._transport)
            self._notifiers[channel] = notifier
            return notifier

    def close(self) -> None:
        with self._lock:
            for notifier in self._notifiers.values():
                notifier.close()
            self._notifiers.clear()


class Outbox:
    """Stores notifications and delivers them from one background thread."""

    def __init__(
        self,
        store: OutboxStore,
        resolve: Resolver,
        *,
        max_attempts: int = 8,
        base_delay: float = 2.0,
        max_delay: float = 300.0,
        lease: float = 30.0,
        batch: int = 4,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        """``lease`` must exceed the time to try one claimed ``batch`` (``batch`` times a
        sender's timeout: 4 × 5 s) or a slow worker's entries could be claimed again; it is
        also how late a message can be when the controller died holding it, so it is kept
        short (30 s) and the batch small. Defaults: 8 attempts 2 s to 5 min apart, about
        8 minutes in all, enough to ride out a Slack incident without resending for hours."""
        if max_attempts < 1 or base_delay <= 0 or max_delay < base_delay or lease <= 0:
            raise ValueError("outbox: need max_attempts >= 1 and 0 < base_delay <= max_delay")
        self._store = store
        self._resolve = resolve
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lease = lease
        self.batch = batch
        self.poll_interval = poll_interval
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the caller's side: cheap and never blocked by an endpoint ----------------------

    @staticmethod
    def entries(notification: Notification, channels: Iterable[str]) -> list[OutboxEntry]:
        """What ``store.save(..., notifications=...)`` takes: one entry per channel."""
        payload = notification.to_dict()
        return [
            OutboxEntry(
                dedupe_key=notification.dedupe_key,
                channel=channel,
                rollout_id=notification.rollout_id,
                event=notification.event,
                payload=payload,
            )
            for channel in channels
        ]

    def record(self, notification: Notification, channels: Iterable[str]) -> int:
        """Record a notification that was not saved with its transition; returns how many
        channels were new (0: it was already recorded)."""
        added = self._store.enqueue(self.entries(notification, channels), now=self._clock())
        self.wake()
        return added

    def wake(self) -> None:
        """Tell the worker there is something new (it also polls, so this is only speed)."""
        self._wake.set()

    # --- the worker ----------------------------------------------------------------------

    def start(self) -> Outbox:
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="canary-outbox", daemon=True)
        self._thread.start()
        log.info("notify.outbox_started", max_attempts=self.max_attempts, lease=self.lease)
        return self

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop after the current delivery; True if the worker ended within ``timeout``."""
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return True
        thread.join(timeout)
        stopped = not thread.is_alive()
        log.info("notify.outbox_stopped", clean=stopped)
        return stopped

    def __enter__(self) -> Outbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stopping.is_set():
            handled = 0
            try:
                handled = self.deliver_due()
            except StoreError as exc:
                log.warning("notify.outbox_store_error", error=str(exc))
            except Exception:
                # A bug must not silently end announcements for the daemon's lifetime.
                log.exception("notify.outbox_error")
            if handled >= self.batch:
                continue  # more may be due right now
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def deliver_due(self) -> int:
        """One pass: claim what is due and try each once; returns how many were claimed."""
        items = self._store.claim_due(now=self._clock(), lease=self.lease, limit=self.batch)
        for item in items:
            if self._stopping.is_set():
                break  # the rest are retried when their lease runs out
            self._deliver(item)
        return len(items)

    def backoff(self, attempt: int) -> float:
        """Delay after the ``attempt``-th failure: doubling, capped, half of it random."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempt - 1))
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def _deliver(self, item: OutboxItem) -> None:
        entry = item.entry
        fields = {"channel": entry.channel, "rollout_event": entry.event, "key": entry.dedupe_key}
        retryable = True
        retry_after: float | None = None
        try:
            notification = Notification.from_dict(entry.payload)
        except (ValueError, KeyError, TypeError) as exc:
            error, retryable = f"unreadable notification: {type(exc).__name__}: {exc}", False
        else:
            notifier = self._resolve(entry.channel)
            if notifier is None:
                error = f"channel {entry.channel} is not configured (is its variable set?)"
            else:
                try:
                    notifier.send(notification)
                except DeliveryError as exc:
                    error, retryable, retry_after = str(exc), exc.retryable, exc.retry_after
                except NotifyError as exc:
                    error = str(exc)
                except Exception as exc:
                    error = f"unexpected {type(exc).__name__} in the {entry.channel} notifier"
                    log.exception("notify.notifier_error", **fields)
                else:
                    self._store.mark_sent(item.id, at=self._clock())
                    log.info("notify.sent", attempts=item.attempts, **fields)
                    return
        now = self._clock()
        if retryable and item.attempts < self.max_attempts:
            delay = max(self.backoff(item.attempts), retry_after or 0.0)
            self._store.mark_failed(item.id, error=error, at=now, retry_at=now + delay)
            log.warning(
                "notify.retry_scheduled",
                attempts=item.attempts,
                retry_in=round(delay, 3),
                error=error,
                **fields,
            )
        else:
            self._store.mark_failed(item.id, error=error, at=now)
            log.error("notify.gave_up", attempts=item.attempts, error=error, **fields)
