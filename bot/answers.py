"""What a short answer means: yes or no, send or change. No Rasa imports.

This is the deterministic fast path. The message is split into known
phrases (longest first); each phrase carries a tag. An answer is understood
only when every word belongs to a known phrase and the tags agree:
"yep that's all correct" is yes + yes, "looks good, send it please" is
yes + send + padding, "no but sometimes" is no + qualifier. A message with a
word this does not know is not understood here; the adapters then ask
Rasa's NLU (intents affirm, deny, confirm_send, change, trained on
data/nlu/answers.yml), and if that is unsure too, ask again.

The safety questions read answers more strictly (``clear_no``): only a whole
message that is a plain no counts as no. "Not really", "no, not right now",
"no?" and "no... well maybe" are not a clear no; the caller handles them as a
yes, for safety.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

YES, NO, SEND, CHANGE = "yes", "no", "send", "change"

# Tags. SOFT_NO is a no for an ordinary question but not a clear no for a
# safety question. HOLD is "not yet" at the review. QUALIFIER makes any
# answer unclear. NEGATION turns a following send into a hold; elsewhere it
# leaves the fast path unsure, so the NLU reads the message ("no, not safe").
_YES, _SAFE, _NO, _SOFT_NO, _SEND, _CHANGE, _HOLD, _QUALIFIER, _NEGATION, _PAD = (
    "yes",
    "safe",
    "no",
    "soft_no",
    "send",
    "change",
    "hold",
    "qualifier",
    "negation",
    "pad",
)

# Phrases are written as people type them; _norm() removes accents,
# apostrophes and punctuation before matching, so "that's" matches "thats"
# and "sí" matches "si".
_LEXICON: dict[str, tuple[str, ...]] = {
    _YES: (
        "yes",
        "y",
        "ye",
        "yea",
        "yeah",
        "yeh",
        "yep",
        "yup",
        "yah",
        "ya",
        "yh",
        "yas",
        "yess",
        "yesss",
        "aye",
        "sure",
        "sure thing",
        "ok",
        "okay",
        "okey",
        "okie",
        "k",
        "kk",
        "alright",
        "all right",
        "of course",
        "course",
        "definitely",
        "absolutely",
        "certainly",
        "correct",
        "right",
        "that's right",
        "that is right",
        "thats correct",
        "that's correct",
        "that is correct",
        "it is",
        "it's right",
        "it's correct",
        "it is right",
        "it is correct",
        "true",
        "i do",
        "i am",
        "i have",
        "i agree",
        "agreed",
        "fine",
        "that's fine",
        "that is fine",
        "it's fine",
        "fine by me",
        "that's ok",
        "that's okay",
        "that's alright",
        "good",
        "all good",
        "looks good",
        "look good",
        "looks right",
        "looks fine",
        "looks correct",
        "looks ok",
        "looks okay",
        "looks great",
        "looks perfect",
        "sounds good",
        "sounds fine",
        "sounds right",
        "great",
        "perfect",
        "lovely",
        "brilliant",
        "cool",
        "that works",
        "works for me",
        "go ahead",
        "go for it",
        "do it",
        "please do",
        "yes please",
        "yes it is",
        "yes i do",
        "yes i am",
        "that's it",
        "all correct",
        "all right",
        "all fine",
        "all ok",
        "its all correct",
        "it's all correct",
        "that's all correct",
        "that's all right",
        "that's all good",
        "that's all fine",
        "everything is correct",
        "everything is right",
        "everything's correct",
        "everything's right",
        "everything looks good",
        "everything looks right",
        "everything is fine",
        "everything is good",
        "yes that's right",
        "yes that's correct",
        # Spanish
        "si",
        "claro",
        "claro que si",
        "vale",
        "de acuerdo",
        "esta bien",
        "todo bien",
        "todo esta bien",
        "por supuesto",
        "bueno",
        "dale",
        "perfecto",
        "correcto",
        "todo correcto",
        "asi es",
        "eso es",
        "afirmativo",
        "sip",
    ),
    # Only a yes to "are you safe right now?".
    _SAFE: (
        "safe",
        "i'm safe",
        "i am safe",
        "yes i'm safe",
        "yes i am safe",
        "i'm ok",
        "i'm okay",
        "i am ok",
        "i am okay",
        "i'm safe now",
        "estoy a salvo",
        "estoy segura",
        "estoy seguro",
        "estoy bien",
        "si estoy bien",
        "si estoy a salvo",
    ),
    _NO: (
        "no",
        "n",
        "nope",
        "nah",
        "naw",
        "nop",
        "no no",
        "no way",
        "never",
        "no never",
        "none",
        "not at all",
        "no not at all",
        "definitely not",
        "absolutely not",
        "certainly not",
        "of course not",
        "no i'm not",
        "no im not",
        "no i am not",
        "i'm not",
        "i am not",
        "no i don't",
        "no i do not",
        "i don't",
        "i do not",
        "no i haven't",
        "i haven't",
        "no i have not",
        "no it isn't",
        "no it's not",
        "no it is not",
        "it isn't",
        "it's not",
        "it is not",
        "no thoughts",
        "no thoughts like that",
        "no such thoughts",
        "no i'm fine",
        "no i am fine",
        "i would rather you didn't",
        "i'd rather you didn't",
        "please don't",
        "don't",
        "dont",
        # Spanish
        "para nada",
        "nunca",
        "en absoluto",
        "de ninguna manera",
        "ninguno",
        "ninguna",
        "no tengo",
        "no tengo esos pensamientos",
        "no tengo pensamientos asi",
        "no estoy",
        "no quiero",
        "no para nada",
    ),
    _SOFT_NO: (
        "not really",
        "no not really",
        "i don't think so",
        "i dont think so",
        "don't think so",
        "not that i know",
        "not that i know of",
        "not as far as i know",
        "i'm good",
        "nah i'm good",
        "no i'm good",
        "la verdad que no",
        "la verdad no",
        "realmente no",
        "no mucho",
    ),
    _SEND: (
        "send",
        "send it",
        "send it now",
        "send it off",
        "send it in",
        "send it please",
        "send now",
        "send away",
        "send my referral",
        "send the referral",
        "send referral",
        "send it all",
        "please send",
        "please send it",
        "you can send it",
        "you can send",
        "go ahead and send",
        "go ahead and send it",
        "submit",
        "submit it",
        "submit now",
        "submit my referral",
        "submit the referral",
        "confirm",
        "confirmed",
        "done",
        "i'm done",
        "that's everything",
        "that's all",
        "thats it send it",
        "ship it",
        "send send",
        # Spanish
        "envialo",
        "enviala",
        "envia",
        "enviar",
        "enviarlo",
        "enviarla",
        "enviar ya",
        "envialo ya",
        "mandalo",
        "mandala",
        "manda",
        "mandar",
        "mandarlo",
        "puedes enviarlo",
        "puedes mandarlo",
        "enviar mi derivacion",
        "ya esta",
        "listo",
        "confirmar",
        "confirmo",
    ),
    _CHANGE: (
        "change",
        "change it",
        "change something",
        "change one",
        "change an answer",
        "change one answer",
        "change a thing",
        "i want to change",
        "i want to change something",
        "i need to change something",
        "i'd like to change something",
        "can i change something",
        "edit",
        "edit something",
        "fix",
        "fix something",
        "i need to fix something",
        "correct something",
        "something's wrong",
        "something is wrong",
        "somethings wrong",
        "something's not right",
        "something is not right",
        "something isn't right",
        "that's wrong",
        "that is wrong",
        "wrong",
        "that's not right",
        "that is not right",
        "thats not correct",
        "that's not correct",
        "it's wrong",
        "it's not right",
        "not right",
        "not correct",
        "not quite",
        "not quite right",
        "incorrect",
        "mistake",
        "a mistake",
        "there's a mistake",
        "there is a mistake",
        "one thing is wrong",
        "one is wrong",
        "one answer is wrong",
        "needs changing",
        "needs fixing",
        "go back and change",
        "let me change something",
        # Spanish
        "cambiar",
        "cambiar algo",
        "quiero cambiar",
        "quiero cambiar algo",
        "cambiar una respuesta",
        "hay un error",
        "un error",
        "esta mal",
        "no esta bien",
        "algo esta mal",
        "corregir",
        "corregir algo",
        "quiero corregir algo",
    ),
    _HOLD: (
        "wait",
        "wait a sec",
        "wait a second",
        "wait a minute",
        "hold on",
        "hang on",
        "hold",
        "not yet",
        "not now",
        "later",
        "don't send",
        "dont send",
        "do not send",
        "don't send it",
        "don't send it yet",
        "don't submit",
        "do not submit",
        "not ready",
        "i'm not ready",
        "one moment",
        "one sec",
        "just a sec",
        "give me a minute",
        # Spanish
        "espera",
        "esperate",
        "un momento",
        "todavia no",
        "aun no",
        "no lo envies",
        "no enviar",
        "no lo mandes",
        "no mandar",
        "no todavia",
    ),
    _QUALIFIER: (
        "but",
        "maybe",
        "sometimes",
        "some times",
        "somtimes",
        "kinda",
        "kind of",
        "sort of",
        "sorta",
        "probably",
        "perhaps",
        "might",
        "possibly",
        "i guess",
        "guess",
        "i think",
        "think so",
        "i suppose",
        "suppose",
        "not sure",
        "unsure",
        "i don't know",
        "don't know",
        "dont know",
        "idk",
        "dunno",
        "depends",
        "it depends",
        "unless",
        "although",
        "though",
        "except",
        "only",
        "at the moment",
        "right now",
        "today",
        "tonight",
        "anymore",
        "any more",
        "lately",
        "recently",
        "yet",
        "well",
        "hmm",
        "hm",
        "ehh",
        "eh",
        "meh",
        "umm",
        "um",
        "uh",
        "a bit",
        "a little",
        "a little bit",
        "somewhat",
        "occasionally",
        "often",
        "used to",
        "not always",
        "not every day",
        "mostly",
        "partly",
        "i hope",
        "hopefully",
        "or",
        # Spanish
        "pero",
        "a veces",
        "aveces",
        "quizas",
        "quiza",
        "tal vez",
        "no se",
        "no lo se",
        "creo",
        "creo que no",
        "no creo",
        "ahora",
        "ahora no",
        "todavia",
        "antes",
        "un poco",
        "mas o menos",
        "depende",
        "casi",
        "o",
    ),
    _NEGATION: ("not", "do not", "don't", "no lo", "no la"),
    _PAD: (
        "please",
        "pls",
        "plz",
        "thanks",
        "thank you",
        "thankyou",
        "thanks a lot",
        "thx",
        "ty",
        "cheers",
        "lol",
        "haha",
        "ha",
        "oh",
        "so",
        "and",
        "then",
        "yes yes",
        "ok then",
        "that's all thanks",
        "por favor",
        "gracias",
        "muchas gracias",
        "y",
        "entonces",
    ),
}
# A phrase listed under two tags keeps the first: "don't" is a no on its own
# (read() makes a no before "send" a hold), "y" is a yes, not Spanish "and".
_MARKS_UNSURE = re.compile(r"\?|\.\.|\u2026")


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("\u2019", "").replace("\u2018", "").replace("'", "")
    text = re.sub(r"[^\w\s]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


@functools.lru_cache(maxsize=1)
def _phrases() -> tuple[dict[tuple[str, ...], str], int]:
    table: dict[tuple[str, ...], str] = {}
    for tag, phrases in _LEXICON.items():
        for phrase in phrases:
            table.setdefault(tuple(_norm(phrase).split()), tag)
    return table, max(len(k) for k in table)


@dataclass(frozen=True)
class Reading:
    """The tags found in a message, and whether every word was known."""

    tags: tuple[str, ...]
    complete: bool  # every word is part of a known phrase
    unsure_marks: bool  # a question mark or trailing dots

    @property
    def qualified(self) -> bool:
        return _QUALIFIER in self.tags

    def only(self, *allowed: str) -> bool:
        meaningful = [t for t in self.tags if t != _PAD]
        return self.complete and bool(meaningful) and all(t in allowed for t in meaningful)


def read(text: str) -> Reading:
    table, longest = _phrases()
    words = _norm(text).split()
    # The split into known phrases that leaves the fewest words unknown, then
    # uses the fewest phrases ("yes, please do" is yes + "please do").
    best: list[tuple[int, int, list[str]] | None] = [None] * (len(words) + 1)
    best[0] = (0, 0, [])
    for i in range(len(words)):
        if best[i] is None:
            continue
        unknown, count, tags_so_far = best[i]
        for size in range(1, min(longest, len(words) - i) + 1):
            tag = table.get(tuple(words[i : i + size]))
            if tag is None and size > 1:
                continue  # an unknown word is skipped one at a time
            candidate = (unknown + (tag is None), count + 1, tags_so_far + ([tag] if tag else []))
            if best[i + size] is None or candidate[:2] < best[i + size][:2]:
                best[i + size] = candidate
    unknown_words, _, tags = best[len(words)]
    complete = unknown_words == 0
    # "not" / "don't" before a send is a hold ("don't send it").
    for k, tag in enumerate(tags[:-1]):
        if tag in (_NEGATION, _NO) and tags[k + 1] == _SEND:
            tags[k], tags[k + 1] = _HOLD, _PAD
    return Reading(tuple(tags), complete, bool(_MARKS_UNSURE.search(text)))


def yes_no(text: str) -> bool | None:
    """An ordinary yes/no answer: True, False, or None when not understood."""
    reading = read(text)
    if reading.only(_YES):
        return True
    if reading.only(_NO, _SOFT_NO):
        return False
    return None


def review(text: str) -> str | None:
    """At the review: SEND, CHANGE, or None (not understood, or "not yet")."""
    reading = read(text)
    if _HOLD in reading.tags or reading.qualified:
        return None
    if reading.only(_YES, _SEND) and not reading.unsure_marks:
        return SEND
    if reading.only(_NO, _SOFT_NO, _CHANGE):
        return CHANGE
    return None


def clear_no(text: str) -> bool:
    """A whole message that is a plain no: nothing qualified, unsure or unknown."""
    reading = read(text)
    return reading.only(_NO) and not reading.unsure_marks


def clear_yes(text: str, safe: bool = False) -> bool:
    """A whole message that is a plain yes: nothing qualified, unsure or unknown.

    ``safe``: the question was "are you safe?", so "I'm safe" is a yes too.
    """
    reading = read(text)
    return reading.only(_YES, *((_SAFE,) if safe else ())) and not reading.unsure_marks


def is_qualified(text: str) -> bool:
    """The message hedges ("but", "maybe", "sometimes", "not right now", "?")."""
    reading = read(text)
    return reading.qualified or reading.unsure_marks


def is_mixed(text: str) -> bool:
    """Both a yes and a no in one message ("yeah no problem", "no, send it"):
    the NLU is not asked to choose; the question is asked again."""
    tags = set(read(text).tags)
    return bool(tags & {_YES, _SEND}) and bool(tags & {_NO, _SOFT_NO, _CHANGE})


def is_hold(text: str) -> bool:
    """ "Not yet", "wait", "don't send it": at the review, never a send."""
    return _HOLD in read(text).tags


# Rasa's NLU intents for the same answers (data/nlu/answers.yml), and what
# each means for a yes/no question and at the review.
NLU_YES_NO = {"affirm": True, "deny": False}
NLU_REVIEW = {"confirm_send": SEND, "affirm": SEND, "change": CHANGE, "deny": CHANGE}
# Chosen on the held-out phrasings (tests/data/answer_phrasings.yml): at 0.6
# none was read the wrong way; hedges never reach the NLU.
NLU_CONFIDENCE = 0.6


def nlu_guess(intent: dict | None, table: dict) -> object | None:
    """The NLU's reading, when it is confident and the fast path found no hedge."""
    if not intent:
        return None
    name, confidence = intent.get("name"), intent.get("confidence") or 0.0
    if name in table and confidence >= NLU_CONFIDENCE:
        return table[name]
    return None
