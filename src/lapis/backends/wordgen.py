"""English-like filler text, and strings matching simple regexes, for the simulator.

Sentences come from a handful of templates filled with common words. Every
word is chosen so that " word" (with its leading space) is exactly one token
in both o200k_base and cl100k_base (tests check this), which keeps token
counts predictable and lets the stream split text token by token.

Temperature widens the vocabulary: at 0 only the first ~30% of each word
class is used, at 2 all of it.

`from_regex` walks the stdlib regex parse tree (literals, classes, \\d \\w \\s,
repeats, groups, alternation, anchors) to build a candidate for a JSON Schema
"pattern"; lookarounds, backreferences and negated classes are unsupported.
"""

from __future__ import annotations

import random
from re import _parser as _sre  # type: ignore[attr-defined]  # stdlib regex parser, 3.11+
from typing import Any, Callable

NOUNS = (
    "time people year world day life place house water part number hand home "
    "point end city land light mind story school night group team plan idea "
    "fact case area side name word line book river road tree stone friend "
    "family morning evening season garden market window table paper letter "
    "voice field ocean mountain forest village country history science nature "
    "energy system method result question answer reason change model data "
    "value order power money price service project process design report "
    "record sound color picture moment future figure level center course"
).split()
VERBS = (
    "use make know find keep need want start open turn help follow create "
    "build share learn teach watch read write bring carry hold move change "
    "improve explain describe remember notice reach return offer provide "
    "support consider include understand produce decide play plan run"
).split()
ADJECTIVES = (
    "good new long great small high large little old next early real simple "
    "clear short full free true strong young bright quiet warm cold green "
    "blue common local public general special recent final major basic "
    "modern ancient careful happy calm brave honest patient curious useful "
    "gentle heavy rich wide narrow deep safe whole certain"
).split()
MANNER = "often always quickly slowly gently rarely nearly already soon later again still".split()
LINKERS = "however therefore meanwhile perhaps instead".split()
PREPOSITIONS = (
    "in on with at from for into over under through between after before "
    "during against along near inside outside across above below behind "
    "beyond within without toward around among"
).split()
DETERMINERS = "the this each every some another".split()
MODALS = "can may could would must will should might".split()

#: Every word the generator may emit (besides "People", "We", "You", "is", "and").
WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        NOUNS + VERBS + ADJECTIVES + MANNER + LINKERS + PREPOSITIONS + DETERMINERS
        + MODALS + ["people", "we", "you", "is", "and"]
    )
)

_Pick = Callable[[list[str]], str]

# Each template returns the words of one sentence; "," and "." are separate tokens.
_TEMPLATES: tuple[Callable[[_Pick], list[str]], ...] = (
    lambda p: [p(DETERMINERS), p(ADJECTIVES), p(NOUNS), p(MODALS), p(VERBS), "the", p(NOUNS)],
    lambda p: [p(LINKERS), ",", "the", p(NOUNS), p(MODALS), p(VERBS), p(PREPOSITIONS), "the", p(ADJECTIVES), p(NOUNS)],
    lambda p: ["we", p(MANNER), p(VERBS), "the", p(NOUNS), p(PREPOSITIONS), p(DETERMINERS), p(NOUNS)],
    lambda p: [p(DETERMINERS), p(NOUNS), "is", p(ADJECTIVES), "and", p(ADJECTIVES)],
    lambda p: ["people", p(MODALS), p(VERBS), p(DETERMINERS), p(ADJECTIVES), p(NOUNS), p(MANNER)],
    lambda p: ["you", "should", p(VERBS), "the", p(NOUNS), ",", "and", "the", p(NOUNS), p(MODALS), p(VERBS), p(MANNER)],
)


def _picker(rng: random.Random, temperature: float) -> _Pick:
    share = 0.3 + 0.35 * min(max(temperature, 0.0), 2.0)  # 0.3 at t=0 .. 1.0 at t=2

    draw = rng.random  # one float per word: several times cheaper than randrange

    def pick(words: list[str]) -> str:
        return words[int(draw() * max(2, round(len(words) * share)))]

    return pick


def sentence(rng: random.Random, temperature: float) -> str:
    """One capitalised sentence ending with ".", without a leading space."""
    words = rng.choice(_TEMPLATES)(_picker(rng, temperature))
    words[0] = words[0].capitalize()
    text = words[0]
    for word in words[1:]:
        text += word if word in ",." else " " + word
    return text + "."


def paragraph(rng: random.Random, temperature: float, min_tokens: int, count: Callable[[str], int]) -> str:
    """Whole sentences until their token count reaches `min_tokens` (at least
    one). Counted a sentence at a time: the words are single tokens with or
    without their leading space, so the parts add up to the whole."""
    parts = [sentence(rng, temperature)]
    total = count(parts[0])
    while total < min_tokens:
        parts.append(sentence(rng, temperature))
        total += count(parts[-1])
    return " ".join(parts)


def words(rng: random.Random, n: int, temperature: float = 1.0) -> str:
    """`n` space-separated lower-case words (for short strings, JSON values)."""
    pick = _picker(rng, temperature)
    return " ".join(pick(NOUNS if i % 2 else ADJECTIVES) for i in range(n))


def from_regex(pattern: str, rng: random.Random) -> str | None:
    """A string matching a simple regex, from its parse tree; None if unsupported."""
    try:
        return _emit(_sre.parse(pattern), rng)
    except Exception:  # unsupported construct or not a valid Python regex
        return None


_CATEGORY_CHARS = {"DIGIT": "0123456789", "WORD": "abcxyz_019", "SPACE": " "}


def _emit(tree: Any, rng: random.Random) -> str:
    c = _sre
    out: list[str] = []
    for op, arg in tree:
        if op is c.LITERAL:
            out.append(chr(arg))
        elif op is c.NOT_LITERAL:
            out.append("a" if arg != ord("a") else "b")
        elif op is c.ANY:
            out.append("x")
        elif op is c.IN:
            out.append(_emit_class(arg, rng))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            lo, hi, sub = arg
            n = rng.randint(lo, max(lo, min(hi, lo + 3)))
            out.extend(_emit(sub, rng) for _ in range(n))
        elif op is c.SUBPATTERN or op is c.ATOMIC_GROUP:
            out.append(_emit(arg[-1] if op is c.SUBPATTERN else arg, rng))
        elif op is c.BRANCH:
            out.append(_emit(rng.choice(arg[1]), rng))
        elif op is c.AT:
            continue
        else:
            raise ValueError(op)
    return "".join(out)


def _emit_class(items: list[Any], rng: random.Random) -> str:
    c = _sre
    choices: list[str] = []
    if items and items[0][0] is c.NEGATE:
        raise ValueError("negated class")
    for op, arg in items:
        if op is c.LITERAL:
            choices.append(chr(arg))
        elif op is c.RANGE:
            choices.extend(chr(x) for x in range(arg[0], min(arg[1], arg[0] + 25) + 1))
        elif op is c.CATEGORY:
            name = str(arg).rsplit("_", 1)[-1]
            if "NOT" in str(arg):
                raise ValueError("negated category")
            choices.extend(_CATEGORY_CHARS.get(name, "a"))
    return rng.choice(choices)
