"""The conversation lock several Rasa instances share, made atomic.

Rasa's ``RedisLockStore`` changes a lock by reading it, changing it in
Python and writing it back. Two instances taking a ticket for the same
conversation at the same moment both read "no lock", both make ticket 0 and
both go ahead: the two turns run at once on the same conversation. Seen here
in tests/test_e2e_production.py, where two "send" messages at once were both
answered "sent" instead of one being told "already sent".

``AtomicRedisLockStore`` makes every change of a lock one Redis transaction
(WATCH the key, read, change, MULTI/EXEC; retried when another instance
changed the key in between), so each ticket is issued once.

endpoints.production.yml: ``type: bot.rasa_ext.lock_store.AtomicRedisLockStore``
with Rasa's redis lock store settings (url, port, db, password, key_prefix).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore


class AtomicRedisLockStore(RedisLockStore):
    def __init__(self, endpoint_config=None, **kwargs: Any):
        if endpoint_config is not None:
            kwargs = {"host": endpoint_config.url, **endpoint_config.kwargs, **kwargs}
        super().__init__(**kwargs)

    def _change(self, conversation_id: str, change: Callable[[TicketLock | None], Any]) -> Any:
        """Run ``change`` on the stored lock in one transaction. ``change`` edits
        the lock in place and returns (what to give back, keep the lock?)."""
        key = self.key_prefix + conversation_id

        def transaction(pipe) -> Any:
            raw = pipe.get(key)  # watched: EXEC fails if another instance writes the key
            lock = TicketLock.from_dict(json.loads(raw)) if raw else None
            result, keep = change(lock)
            pipe.multi()
            if keep is not None:
                pipe.set(key, keep.dumps())
            elif lock is not None:
                pipe.delete(key)
            return result

        return self.red.transaction(transaction, key, value_from_callable=True)

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        def issue(lock: TicketLock | None):
            lock = lock or self.create_lock(conversation_id)
            return lock.issue_ticket(lock_lifetime), lock

        try:
            return self._change(conversation_id, issue)
        except Exception as error:
            raise LockError(f"Error while acquiring lock: {type(error).__name__}") from error

    def update_lock(self, conversation_id: str) -> None:
        def remove_expired(lock: TicketLock | None):
            if lock is not None:
                lock.remove_expired_tickets()
            return None, lock

        self._change(conversation_id, remove_expired)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        """Finish this ticket; the lock goes when no one else holds one."""

        def finish(lock: TicketLock | None):
            if lock is None:
                return None, None
            lock.remove_ticket_for(ticket_number)
            return None, lock if lock.is_someone_waiting() else None

        self._change(conversation_id, finish)
