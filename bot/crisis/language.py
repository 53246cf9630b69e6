"""Which language a message is in, among the encoder's languages.

Only to choose the crisis response: Spanish has its own wording; English is
the default; any other language gets the English wording with a plain line
that the crisis line can connect them with an interpreter. A guess that is
wrong costs little (the English response is always shown), so this is a
small rule: the script first, then common words and letters.
"""

from __future__ import annotations

import re

# Common short words, chosen to tell the Latin-script languages apart.
_WORDS = {
    "en": "i the and you my me to is it of not a am im i'm can don't dont just want what have this that with",
    "es": "que quiero estoy mi de la el y en me no es por una un con para se lo muy pero tengo soy ya nada "
    "yo mas más puedo vida q xq",
    "fr": "je j'ai ne pas plus le la les et est suis mon ma mes tu vous c'est une un des envie vivre moi "
    "rien veux peux",
    "de": "ich nicht und das ist mein meine mich mir du ein eine der die sie kann will mehr nichts leben "
    "habe bin",
    "it": "io non e il la che mi sono più voglio vivere ho della per una un niente ce la faccio",
    "pt": "eu não nao que de mais estou minha meu vida quero um uma com pra para tô to já nada consigo",
    "nl": "ik niet het een de en is mijn wil meer leven kan dat ben heb niks",
    "pl": "nie jestem się sie już juz chcę chce żyć zyc mnie mam nic to że ze jak moje",
    "tr": "ben bir ve bu çok artık istiyorum değil yok mi benim hiç ama yaşamak",
}
_LATIN_LANGUAGES = tuple(_WORDS)
_LEXICON = {lang: set(words.split()) for lang, words in _WORDS.items()}
_LETTERS = {
    "es": "ñ¿¡",
    "fr": "çèêàùœâ",
    "de": "ßäöü",
    "pt": "ãõç",
    "pl": "ąęłńśźżć",
    "tr": "ğışç",
    "it": "ìò",
}
_SCRIPTS = (
    ("th", re.compile(r"[\u0e00-\u0e7f]")),
    ("ko", re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")),
    ("ja", re.compile(r"[\u3040-\u30ff]")),
    ("zh", re.compile(r"[\u4e00-\u9fff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
)
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def detect(text: str) -> str:
    """An ISO 639-1 code of the encoder's languages; "en" when nothing says otherwise."""
    text = text or ""
    for language, script in _SCRIPTS:
        if len(script.findall(text)) >= 2:
            return language
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    if not words:
        return "en"
    scores = {}
    for language in _LATIN_LANGUAGES:
        hits = sum(w in _LEXICON[language] for w in words)
        letters = sum(ch in _LETTERS.get(language, "") for ch in text.lower())
        scores[language] = hits + 0.5 * min(letters, 4)
    best = max(scores, key=lambda lang: (scores[lang], lang == "en"))
    # English wins ties and weak evidence: most messages are English.
    if best != "en" and scores[best] >= 2 and scores[best] > scores["en"]:
        return best
    return "en"
