"""Patches to Rasa's internals that make a turn cheaper without changing what it does.

Each replaces one function of the pinned Rasa (3.6.21). ``PINNED`` holds a
hash of the source of every function replaced; ``install`` patches only
when the source is still the one it was written against (otherwise Rasa's
own function stays, and a warning says so), and tests/test_rasa_ext.py fails
when an upgrade changes one, so the patch is looked at again.

- ``RemoteAction._validate_action_result`` checked the action server's
  answer with ``jsonschema.validate``, which checks the schema itself and
  builds a new validator on every call (about 39% of Rasa's CPU under
  load). The schema never changes, so it is checked and its validator built
  once; each answer is validated exactly as before (the same best-matching
  error, with the same message added).
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

RASA_VERSION = "3.6.21"
PINNED = {
    "rasa.core.actions.action.RemoteAction._validate_action_result": (
        "f8cdb4be6812396167ced74161b2ccd65c5ea676ad86d7d359d8c322d9d8dc42"
    ),
}


def source_hash(function: Callable) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def _targets() -> dict[str, tuple[object, str]]:
    import rasa.core.actions.action as action

    return {
        "rasa.core.actions.action.RemoteAction._validate_action_result": (
            action.RemoteAction,
            "_validate_action_result",
        ),
    }


def changed() -> list[str]:
    """The patched functions whose source is no longer the pinned one."""
    return [
        name
        for name, (owner, attribute) in _targets().items()
        if source_hash(_original(getattr(owner, attribute))) != PINNED[name]
    ]


def _original(function: Callable) -> Callable:
    return getattr(function, "_referral_original", function)


def _validate_action_result_once() -> Callable:
    import rasa.core.actions.action as action
    from jsonschema import validators
    from jsonschema.exceptions import best_match

    schema = action.RemoteAction.action_response_format_spec()
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)

    def _validate_action_result(self, result: dict) -> bool:
        error = best_match(validator.iter_errors(result))
        if error is None:
            return True
        error.message += (
            ". Failed to validate Action server response from API, "
            "make sure your response from the Action endpoint is valid. "
            "For more information about the format visit "
            f"{action.DOCS_BASE_URL}/custom-actions"
        )
        raise error

    return _validate_action_result


REPLACEMENTS = {
    "rasa.core.actions.action.RemoteAction._validate_action_result": _validate_action_result_once,
}


def install() -> list[str]:
    """Apply every patch whose target is unchanged; returns the names applied."""
    import rasa

    applied = []
    stale = set(changed()) if rasa.__version__ == RASA_VERSION else set(PINNED)
    for name, (owner, attribute) in _targets().items():
        if name in stale:
            log.warning("Rasa's %s is not the one this patch was written for: left as it is", name)
            continue
        current = getattr(owner, attribute)
        if current is not _original(current):
            continue  # already installed
        replacement = REPLACEMENTS[name]()
        replacement._referral_original = current
        setattr(owner, attribute, replacement)
        applied.append(name)
    return applied
