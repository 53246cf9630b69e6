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
  error, with the same message added). Checking a valid answer was still
  about 6% of Rasa's CPU: each event was tried against all 23 branches of
  the events schema's ``oneOf``. The branches are told apart by their
  ``event`` constant, so an event is valid exactly when it passes the
  shared part and its own branch; a valid answer is accepted after those
  checks, and anything else goes through the whole schema, so an invalid
  one raises the same error as before. If a Rasa upgrade gives a branch no
  constant, or two the same one, every answer takes the whole schema again.
- ``Event.resolve_by_type`` walked every subclass of ``Event`` (and asked
  ``inspect.isabstract`` of each) for every event read back from the
  tracker store: about 13% of Rasa's CPU under load, measured by py-spy
  after the patch above. The classes are found once and looked up by name;
  a name not found walks the classes again (a class imported later), then
  answers as Rasa does (the default, None for the old "topic", or an error).
- ``DialogueStateTracker.applied_events`` walked the whole conversation
  every time it was asked, and each policy asks several times for every
  action it predicts: about 28% of Rasa's CPU under load, and the reason a
  turn grows dearer as the conversation grows. The walk is a left fold
  over the events, so a tracker keeps where its last walk ended and walks
  on from there over the events added since. It walks from the start again
  when its events are no longer the ones it walked (replaced, or a capped
  history that dropped its oldest), or when a new event names a loop not
  seen before (Rasa reads every loop name in the conversation first, and a
  new one changes how earlier loop actions count). Each caller gets a list
  of its own, as before.
- ``RemoteAction._action_call_format`` sent the action server the whole
  domain with every call, 155 KB of JSON here, 114 KB of it the responses'
  texts, which the action server never reads (rasa-sdk reads the forms and
  slots; actions name a response and Rasa fills it in). The domain goes
  without its responses; everything else is sent as before.
- ``EndpointConfig.session`` made aiohttp write each request body (the
  whole tracker, every call to the action server: about 8% of Rasa's CPU)
  with ``json.dumps``; it is written with ujson (a dependency of Rasa and
  Sanic, pinned in constraints.txt), 2.7 times faster here, and with
  ``json.dumps`` whenever ujson refuses a value. ``json_loads`` is the
  same for reading, used by the tracker store (bot/rasa_ext/tracker_store.py).
- ``EndpointConfig.request`` made a new aiohttp session, and so a new
  connection to the action server, for every call, and closed both after
  it (several calls a turn). Each endpoint now keeps one session per event
  loop, made as before (headers, auth, timeout, ujson), whose connections
  stay open for ``KEEP_ALIVE`` seconds between calls: less than the 5 s
  after which the action server (Sanic) closes an idle one, so a call is
  never sent on a connection the server is closing. The request itself, its
  errors and its answer are Rasa's. ``close_sessions`` closes them when the
  server stops.
- ``RulePolicy._is_rule_applicable`` is asked of every rule (329 here) for
  each prediction, and each time made a reversed list of the rule's
  states: ``_get_possible_keys`` was about 7% of Rasa's CPU. The reversed
  states are kept per rule key (a key is the JSON of its states, so its
  states never change); the test itself is Rasa's, line for line.
- ``copy.copy`` of a slot (every tracker Rasa makes copies each of the
  domain's slots: the policies' prior trackers, the form's temporary one)
  went through ``__reduce_ex__`` and ``copyreg``: about 5% of Rasa's CPU.
  ``Slot.__copy__`` (added, Rasa has none) does what that does for a plain
  class, a new object with the same ``__dict__``; a slot class with its own
  pickling or ``__slots__`` is copied the long way, as before.
- ``MessageProcessor._load_model`` unpacks and loads the model (about 10 s
  and 260 MB here). ``preload`` does it before Rasa starts, and the next
  processor made for the same file takes that result, once: a process that
  forks several servers (bot/rasa_ext/forks.py) loads the model once, and
  every server shares its pages. Any other load is Rasa's own.
"""

from __future__ import annotations

import asyncio
import copy
import copyreg
import hashlib
import inspect
import json
import logging
import os
import ssl
import weakref
from collections.abc import Callable
from itertools import islice
from typing import Any

import ujson

log = logging.getLogger(__name__)

RASA_VERSION = "3.6.21"
PINNED = {
    "rasa.core.actions.action.RemoteAction._validate_action_result": (
        "f8cdb4be6812396167ced74161b2ccd65c5ea676ad86d7d359d8c322d9d8dc42"
    ),
    "rasa.shared.core.events.Event.resolve_by_type": (
        "b5cf570fa7f286c7059ec73d8880528d03a78b28cf4e80285a46079c0fa65968"
    ),
    "rasa.core.actions.action.RemoteAction._action_call_format": (
        "428795b944f22edba142d278ec47a30098975b01463ba337ec447dade52a0492"
    ),
    "rasa.utils.endpoints.EndpointConfig.session": (
        "e55aa13d9d4fb4bc440ac33b870a97ee162b76dda7ccb6bf68433567475fdffb"
    ),
    "rasa.shared.core.trackers.DialogueStateTracker.applied_events": (
        "764d5065ea9997d613c1984d9357370f9ae32d31ca21346086f16c54f0487aae"
    ),
    "rasa.utils.endpoints.EndpointConfig.request": (
        "ccdb778aed8208e23cde3c3f47eac7fbbbb735dac8f7ef7254d54451c64ad608"
    ),
    "rasa.core.policies.rule_policy.RulePolicy._is_rule_applicable": (
        "64a108b016b46e573d6020b755a6036439dc207a364b45c9ea5dcb0f18dc7068"
    ),
    "rasa.core.processor.MessageProcessor._load_model": (
        "17f24faf96817bdf63af426fcbf3e2d830731a801573e448c070fc0ebb396ad2"
    ),
}


def source_hash(function: Callable) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def _targets() -> dict[str, tuple[object, str]]:
    import rasa.core.actions.action as action
    import rasa.core.policies.rule_policy as rule_policy
    import rasa.core.processor as processor
    import rasa.shared.core.events as events
    import rasa.shared.core.trackers as trackers
    import rasa.utils.endpoints as endpoints

    return {
        "rasa.core.actions.action.RemoteAction._validate_action_result": (
            action.RemoteAction,
            "_validate_action_result",
        ),
        "rasa.shared.core.events.Event.resolve_by_type": (events.Event, "resolve_by_type"),
        "rasa.core.actions.action.RemoteAction._action_call_format": (
            action.RemoteAction,
            "_action_call_format",
        ),
        "rasa.utils.endpoints.EndpointConfig.session": (endpoints.EndpointConfig, "session"),
        "rasa.shared.core.trackers.DialogueStateTracker.applied_events": (
            trackers.DialogueStateTracker,
            "applied_events",
        ),
        "rasa.utils.endpoints.EndpointConfig.request": (endpoints.EndpointConfig, "request"),
        "rasa.core.policies.rule_policy.RulePolicy._is_rule_applicable": (
            rule_policy.RulePolicy,
            "_is_rule_applicable",
        ),
        "rasa.core.processor.MessageProcessor._load_model": (processor.MessageProcessor, "_load_model"),
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
    valid = _quick_validity(schema, cls)

    def _validate_action_result(self, result: dict) -> bool:
        if valid(result):
            return True
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


def _quick_validity(schema: dict, cls: type) -> Callable[[Any], bool]:
    """True only for an answer ``schema`` accepts, found without trying each
    event against every ``oneOf`` branch (see the module's docstring).
    False means "check it against the whole schema", not "invalid"."""
    properties = schema.get("properties", {})
    events = properties.get("events", {})
    item = dict(events.get("items") or {})
    branches = item.pop("oneOf", None) or []
    constants = [b.get("properties", {}).get("event", {}).get("const") for b in branches]
    if (
        set(schema) != {"type", "properties"}
        or schema["type"] != "object"
        or set(properties) != {"events", "responses"}
        or set(events) != {"type", "items"}
        or events["type"] != "array"
        or not branches
        or not all(isinstance(c, str) for c in constants)
        or len(set(constants)) != len(constants)
        or item.get("properties", {}).get("event") != {"type": "string"}
        or "event" not in item.get("required", ())
    ):
        return lambda result: False  # not the schema this was written for
    shared = cls(item).is_valid
    own = {constant: cls(branch).is_valid for constant, branch in zip(constants, branches, strict=True)}
    responses = cls(properties["responses"]).is_valid

    def valid(result: Any) -> bool:
        if not isinstance(result, dict):
            return False
        if "responses" in result and not responses(result["responses"]):
            return False
        listed = result.get("events", [])
        if not isinstance(listed, list):
            return False
        for event in listed:
            name = event.get("event") if isinstance(event, dict) else None
            if not isinstance(name, str) or name not in own or not shared(event) or not own[name](event):
                return False
        return True

    return valid


def _resolve_by_type_by_name() -> Callable:
    import rasa.shared.utils.common
    from rasa.shared.core.events import Event

    by_name: dict = {}

    def find() -> None:
        by_name.clear()
        for cls in rasa.shared.utils.common.all_subclasses(Event):
            by_name.setdefault(cls.type_name, cls)  # the first one, as Rasa's loop finds it

    def resolve_by_type(type_name, default=None):
        """Returns a slots class by its type name."""
        if type_name not in by_name:
            find()
        if type_name in by_name:
            return by_name[type_name]
        if type_name == "topic":
            return None  # backwards compatibility to support old TopicSet evts
        elif default is not None:
            return default
        else:
            raise ValueError(f"Unknown event name '{type_name}'.")

    find()
    return resolve_by_type


def json_dumps(value: Any) -> str:
    """JSON as json.dumps writes it (ujson is faster; json.dumps whatever ujson refuses)."""
    try:
        return ujson.dumps(value, escape_forward_slashes=False)
    except (TypeError, ValueError, OverflowError):
        return json.dumps(value)


def json_loads(text: str | bytes) -> Any:
    """json.loads, faster: ujson, and json.loads for anything ujson refuses."""
    try:
        return ujson.loads(text)
    except (ValueError, OverflowError):
        return json.loads(text)


def client_session(endpoint, connector=None):
    """The aiohttp session Rasa's ``EndpointConfig.session`` makes, writing JSON
    with ujson, on ``connector`` if one is given."""
    import aiohttp
    import rasa.utils.endpoints as endpoints

    # create authentication parameters
    if endpoint.basic_auth:
        auth = aiohttp.BasicAuth(endpoint.basic_auth["username"], endpoint.basic_auth["password"])
    else:
        auth = None

    return aiohttp.ClientSession(
        headers=endpoint.headers,
        auth=auth,
        timeout=aiohttp.ClientTimeout(total=endpoints.DEFAULT_REQUEST_TIMEOUT),
        json_serialize=json_dumps,
        connector=connector,
    )


def _session_with_ujson() -> Callable:
    import aiohttp

    def session(self) -> aiohttp.ClientSession:
        """Creates and returns a configured aiohttp client session."""
        return client_session(self)

    return session


KEEP_ALIVE = 2.0  # seconds an idle connection is kept: under Sanic's 5 (the action server's own)
_sessions: weakref.WeakSet = weakref.WeakSet()  # the sessions made, to close when the server stops


def _request_on_one_session() -> Callable:
    import aiohttp
    import rasa.utils.endpoints as endpoints

    def shared_session(self) -> aiohttp.ClientSession:
        """This endpoint's session on the running event loop: made once, with
        its connections kept open between calls."""
        loop = asyncio.get_running_loop()
        held = getattr(self, "_referral_session", None)
        if held is not None and held[0] is loop and not held[1].closed:
            return held[1]
        fresh = client_session(self, aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEP_ALIVE))
        self._referral_session = (loop, fresh)
        _sessions.add(fresh)
        return fresh

    async def request(
        self,
        method: str = "post",
        subpath: str | None = None,
        content_type: str | None = "application/json",
        compress: bool = False,
        **kwargs: Any,
    ) -> Any | None:
        """Send a HTTP request to the endpoint. Return json response, if available.

        All additional arguments will get passed through
        to aiohttp's `session.request`.
        """
        # create the appropriate headers
        headers = {}
        if content_type:
            headers["Content-Type"] = content_type

        if "headers" in kwargs:
            headers.update(kwargs["headers"])
            del kwargs["headers"]

        if self.headers:
            headers.update(self.headers)

        url = endpoints.concat_url(self.url, subpath)

        sslcontext = None
        if self.cafile:
            try:
                sslcontext = ssl.create_default_context(cafile=self.cafile)
            except FileNotFoundError as e:
                raise endpoints.FileNotFoundException(
                    f"Failed to find certificate file, "
                    f"'{os.path.abspath(self.cafile)}' does not exist."
                ) from e

        session = shared_session(self)
        async with session.request(
            method,
            url,
            headers=headers,
            params=self.combine_parameters(kwargs),
            compress=compress,
            ssl=sslcontext,
            **kwargs,
        ) as response:
            if response.status >= 400:
                raise endpoints.ClientResponseError(
                    response.status,
                    response.reason,
                    await response.content.read(),
                )
            try:
                return await response.json()
            except endpoints.ContentTypeError:
                return None

    return request


async def close_sessions() -> None:
    """Close the sessions ``request`` kept open on the running loop (when the server stops)."""
    loop = asyncio.get_running_loop()
    for session in list(_sessions):
        if session._loop is loop:
            _sessions.discard(session)
            if not session.closed:
                await session.close()


NOT_FOR_ACTIONS = ("responses",)  # domain keys the action server is not sent


def _action_call_format_without_responses() -> Callable:
    trimmed: dict[int, tuple[object, dict]] = {}  # id(domain) -> (domain, what is sent)

    def _action_call_format(self, tracker, domain) -> dict:
        """Create the request json send to the action server."""
        result = _action_call_format._referral_original(self, tracker, domain)
        if "domain" in result:
            known = trimmed.get(id(domain))
            if known is None or known[0] is not domain:
                if len(trimmed) > 8:  # a domain per model loaded: a few at most
                    trimmed.clear()
                sent = {key: value for key, value in result["domain"].items() if key not in NOT_FOR_ACTIONS}
                known = trimmed[id(domain)] = (domain, sent)
            result["domain"] = known[1]
        return result

    return _action_call_format


class _Walk:
    """Where a tracker's last walk of its events ended."""

    __slots__ = ("events", "length", "last", "loop_names", "applied")

    def __init__(self, events, loop_names: set) -> None:
        self.events = events  # the tracker's deque itself: replaced means start again
        self.length = 0
        self.last = None
        self.loop_names = loop_names
        self.applied: list = []


def _applied_events_walked_on() -> Callable:
    from rasa.shared.core.events import (
        ActionExecuted,
        ActionReverted,
        ActiveLoop,
        Restarted,
        SessionStarted,
        UserUtteranceReverted,
        UserUttered,
    )

    def fold(tracker, walk: _Walk, new_events) -> None:
        # Rasa's loop body, unchanged, on the events not walked yet.
        applied = walk.applied
        loop_names = walk.loop_names
        for event in new_events:
            if isinstance(event, (Restarted, SessionStarted)):
                applied.clear()
            elif isinstance(event, ActionReverted):
                tracker._undo_till_previous(ActionExecuted, applied)
            elif isinstance(event, UserUtteranceReverted):
                tracker._undo_till_previous(UserUttered, applied)
                tracker._undo_till_previous(ActionExecuted, applied)
            elif (
                isinstance(event, ActionExecuted)
                and event.action_name in loop_names
                and not tracker._first_loop_execution_or_unhappy_path(event.action_name, applied)
            ):
                tracker._undo_till_previous_loop_execution(event.action_name, applied)
            else:
                applied.append(event)

    def loop_names_in(events) -> set:
        return {event.name for event in events if isinstance(event, ActiveLoop) and event.name}

    def applied_events(self) -> list:
        """Returns all actions that should be applied - w/o reverted events.

        Returns:
            The events applied to the tracker.
        """
        events = self.events
        if events.maxlen is not None:  # a capped history drops its oldest: no walking on
            return applied_events._referral_original(self)
        walk = self.__dict__.get("_referral_walk")
        length = len(events)
        fresh = (
            walk is None
            or walk.events is not events
            or walk.length > length
            or (walk.length and events[walk.length - 1] is not walk.last)
        )
        if not fresh:
            new_events = list(islice(reversed(events), length - walk.length))[::-1]
            if not loop_names_in(new_events) <= walk.loop_names:
                fresh = True
        if fresh:
            walk = _Walk(events, loop_names_in(events))
            new_events = list(events)
            self.__dict__["_referral_walk"] = walk
        if new_events:
            fold(self, walk, new_events)
            walk.length = length
            walk.last = events[-1]
        return list(walk.applied)

    return applied_events


def _rule_applicable_with_kept_states() -> Callable:
    from rasa.shared.core.constants import PREVIOUS_ACTION

    kept: dict[str, tuple] = {}

    def _is_rule_applicable(self, rule_key: str, turn_index: int, conversation_state: dict) -> bool:
        reversed_rule_states = kept.get(rule_key)
        if reversed_rule_states is None:
            reversed_rule_states = tuple(reversed(self._rule_key_to_state(rule_key)))
            if len(kept) < 100_000:  # a model's rules, and the keys tried while training it
                kept[rule_key] = reversed_rule_states
        # From here on, Rasa's own test (rasa/core/policies/rule_policy.py).
        if turn_index >= len(reversed_rule_states):
            return True
        current_previous_action = conversation_state.get(PREVIOUS_ACTION)
        rule_previous_action = reversed_rule_states[turn_index].get(PREVIOUS_ACTION)
        if not rule_previous_action and not current_previous_action:
            return True
        if not rule_previous_action or not current_previous_action:
            return False
        return self._does_rule_match_state(reversed_rule_states[turn_index], conversation_state)

    return _is_rule_applicable


_preloaded: dict[str, tuple] = {}  # model file -> what MessageProcessor._load_model returned for it


def preload(model_path: str) -> None:
    """Load the model now, as Rasa's ``MessageProcessor._load_model`` would, for
    the next processor made for the same file to take (bot/rasa_ext/forks.py:
    a parent loads it once and each forked server takes its copy-on-write copy)."""
    from rasa.core.processor import MessageProcessor

    _preloaded[os.path.realpath(model_path)] = _original(MessageProcessor._load_model)(model_path)


def _load_model_preloaded() -> Callable:
    def _load_model(model_path):
        # Taken once: a later load (another processor, a new model) is Rasa's own.
        loaded = _preloaded.pop(os.path.realpath(str(model_path)), None)
        if loaded is not None:
            return loaded
        return _load_model._referral_original(model_path)

    return _load_model


REPLACEMENTS = {
    "rasa.core.actions.action.RemoteAction._validate_action_result": _validate_action_result_once,
    "rasa.shared.core.events.Event.resolve_by_type": _resolve_by_type_by_name,
    "rasa.core.actions.action.RemoteAction._action_call_format": _action_call_format_without_responses,
    "rasa.utils.endpoints.EndpointConfig.session": _session_with_ujson,
    "rasa.shared.core.trackers.DialogueStateTracker.applied_events": _applied_events_walked_on,
    "rasa.utils.endpoints.EndpointConfig.request": _request_on_one_session,
    "rasa.core.policies.rule_policy.RulePolicy._is_rule_applicable": _rule_applicable_with_kept_states,
    "rasa.core.processor.MessageProcessor._load_model": _load_model_preloaded,
}


SLOT_COPY = "rasa.shared.core.slots.Slot.__copy__"  # added, not replaced: nothing to pin
_PICKLING = (
    "__reduce__", "__reduce_ex__", "__getstate__", "__setstate__", "__slots__",
    "__getnewargs__", "__getnewargs_ex__", "__new__",
)  # fmt: skip
_plain_classes: dict[type, bool] = {}


def _copies_plainly(cls: type) -> bool:
    """For such a class, copy.copy makes ``cls.__new__(cls)`` and updates its
    ``__dict__``: nothing in its MRO changes how it pickles (an empty
    ``__slots__``, as ``abc.ABC`` has, adds no state)."""
    return not any(
        name in vars(k) and not (name == "__slots__" and not vars(k)[name])
        for k in cls.__mro__
        if k is not object
        for name in _PICKLING
    )


def _copy_slot(self):
    cls = type(self)
    plain = _plain_classes.get(cls)
    if plain is None:
        reduced = self.__reduce_ex__(4)
        plain = _copies_plainly(cls) and reduced[:2] == (copyreg.__newobj__, (cls,))
        plain = _plain_classes[cls] = plain and type(reduced[2]) is dict and not any(reduced[3:])
    if not plain:
        return copy._reconstruct(self, None, *self.__reduce_ex__(4))  # copy.copy without __copy__
    new = cls.__new__(cls)
    new.__dict__.update(self.__dict__)
    return new


def _install_slot_copy(off: set[str]) -> list[str]:
    from rasa.shared.core.slots import Slot

    if "__copy__" in off:
        log.info("Rasa's slots are copied as they were (RASA_PATCHES_OFF)")
        return []
    if vars(Slot).get("__copy__") is _copy_slot:
        return []
    if "__copy__" in vars(Slot) or not _copies_plainly(Slot):
        log.warning("Rasa's Slot now copies itself: its copy is left as it is")
        return []
    Slot.__copy__ = _copy_slot
    return [SLOT_COPY]


def switched_off(env: dict[str, str] | None = None) -> set[str]:
    """RASA_PATCHES_OFF: patches left out, by the function's name (``applied_events``,
    ``session``, ...; comma-separated), to measure one against Rasa's own or to
    rule one out."""
    raw = (os.environ if env is None else env).get("RASA_PATCHES_OFF", "")
    wanted = {part.strip() for part in raw.split(",") if part.strip()}
    return {name for name in (*PINNED, SLOT_COPY) if name.rsplit(".", 1)[-1] in wanted}


def install() -> list[str]:
    """Apply every patch whose target is unchanged; returns the names applied."""
    import rasa

    applied = []
    stale = set(changed()) if rasa.__version__ == RASA_VERSION else set(PINNED)
    off = switched_off()
    for name, (owner, attribute) in _targets().items():
        if name in off:
            log.info("Rasa's %s is left as it is (RASA_PATCHES_OFF)", name)
            continue
        if name in stale:
            log.warning("Rasa's %s is not the one this patch was written for: left as it is", name)
            continue
        current = getattr(owner, attribute)
        if current is not _original(current):
            continue  # already installed
        replacement = REPLACEMENTS[name]()
        replacement._referral_original = current
        if isinstance(inspect.getattr_static(owner, attribute), staticmethod):
            replacement = staticmethod(replacement)
        setattr(owner, attribute, replacement)
        applied.append(name)
    if rasa.__version__ == RASA_VERSION:
        applied += _install_slot_copy({name.rsplit(".", 1)[-1] for name in off})
    return applied
