"""A story's clustering signature: the features two tellings of one event share (pure).

A :class:`Signature` holds, per kind, a frozen set of strings:

- ``words`` and ``shingles``: content words (and pairs of consecutive content words) of
  the title and summary, folded with :func:`monitor.matching.textnorm.fold` and then
  :func:`translit_key`. They only compare between stories of one language.
- ``names``: capitalised words (names of people, places, agencies) as
  :func:`translit_key` spells them, so ``Sergueï``/``Sergei``/``Сергей``, ``Jong-un``/
  ``Jong Un``, ``Koursk``/``Kursk``/``Курск`` meet across languages.
- ``title_names``: the names of the title alone, again: they are who the event is
  about (``Putin signs`` and ``Kim ratifies`` the same treaty are two events).
- ``concepts``: the config's alias groups a story mentions (``dprk`` for North Korea /
  DPRK / Pyongyang / Corée du Nord / КНДР / 북한), read with the query parser. They are
  the actors every watched story shares, so they weigh little.
- ``acts``: what happened, from a built-in multilingual lexicon (:data:`ACTS`: ratify,
  sign, sanction, casualties, prisoners, exchange, launch...). They tell apart events of
  the same actors, so they weigh much; ``title_acts`` are those of the title alone.
- ``issuers``: the states or blocs a story names (:data:`ISSUERS`: US, UK, EU, Japan,
  South Korea); on sanctions stories they must agree (see :mod:`.decide`).
- ``numbers``: figures of 10 and above, written any way (``10,000`` / ``10 000`` /
  ``10.000`` -> ``10000``), years excepted (every story of a year has them).

Cost: one fold and one word split of title + summary, a dictionary look-up per word and
per word pair, and a pass of the name rules; 0.25 ms a story measured over the 329
stories of ``tests/data/clusters.jsonl`` (building the vocabulary from config.yaml's
aliases: 2.5 ms, once per configuration).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from monitor.matching.query import And, Near, Node, Not, Or, Term, parse_query
from monitor.matching.textnorm import fold, is_hangul, words

__all__ = [
    "ACTS",
    "ISSUERS",
    "Signature",
    "Story",
    "Vocabulary",
    "normalise_numbers",
    "romanise",
    "romanise_hangul",
    "signature",
    "translit_key",
    "vocabulary",
]

#: What happened, in the languages of the watched outlets (alias-group syntax: ``|`` is
#: OR, ``*`` a prefix, Hangul words match as prefixes since Korean glues on particles).
ACTS: Mapping[str, str] = {
    "ratify": "ratif* | ратифи* | ратифік* | 비준",
    "sign": 'signed | signs | signing | signe | signent | "a signe" | подписа* | підписа* | unterzeichn* | 서명 | 체결',
    "sanction": "sanction* | blacklist* | санкци* | санкці* | sanktion* | 제재",
    "casualties": (
        "casualt* | killed | dead | deaths | wounded | pertes | tues | morts | blesses | потер* | погиб* | убит*"
        " | втрат* | загин* | verluste | getotet | tote | 사상 | 사망 | 전사"
    ),
    "prisoners": "prisoner* | captured | pow | pows | prisonnier* | captur* | плен* | полон* | gefangen* | 포로 | 생포",
    "deploy": "deploy* | deploie* | deploiement* | развернут* | розгорн* | entsandt | stationiert | 파병",
    "launch": (
        "launch* | fired | tir | tire | tirs | lance | lancement* | пуск* | запуск* | запустил* | abgefeuert | 발사"
    ),
    "missile": "missile* | ракет* | rakete* | 미사일",
    "meeting": (
        "talks | met | meets | meeting | rencontre* | entretien* | встрет* | встреч* | переговор* | зустр*"
        " | treffen | 회담"
    ),
    "exchange": "swap* | exchang* | echange* | echanger | обмен* | обмін* | austausch* | 교환",
    "munitions": "shells | munitions | ammunition | obus | снаряд* | боеприпас* | боєприпас* | munition | 포탄",
    "combat": "combat | fighting | battle | combats | бой | боях | бою | бої | kampf* | kampfe | 전투 | 교전",
}

#: States and blocs that issue sanctions, protests or reports.
ISSUERS: Mapping[str, str] = {
    "us": (
        '"united states" | "u s" | washington | treasury | ofac | "etats unis" | americain* | сша | вашингтон'
        ' | американ* | "vereinigte staaten" | usa | 미국'
    ),
    "uk": (
        'britain | british | "united kingdom" | london | "royaume uni" | britannique* | londres | британи*'
        " | великобритани* | британі* | лондон* | grossbritannien | britisch* | 영국"
    ),
    "eu": (
        '"european union" | brussels | "union europeenne" | bruxelles | евросоюз* | брюссел* | євросоюз*'
        ' | "europaische union" | 유럽연합'
    ),
    "japan": "japan | japanese | tokyo | japon | japonais* | япони* | японск* | токио | япон* | 일본",
    "south-korea": (
        '"south korea" | "south korean" | seoul | "coree du sud" | "sud coreen*" | seoul | "южная корея"'
        ' | "южной кореи" | южнокорейск* | сеул* | "південна корея" | південнокорейськ* | sudkorea* | 한국 | 서울'
    ),
}
# Upper-case abbreviations that are issuers only when written in capitals (folded, "us",
# "eu" and "ue" are also an English pronoun and French words).
_ISSUER_CAPS: Mapping[str, str] = {"US": "us", "UK": "uk", "EU": "eu", "UE": "eu", "ЕС": "eu", "ЄС": "eu"}

# Function words of the six languages, and the wires' slugs ("(LEAD)", "(URGENT)"), which
# are capitalised but name nothing.
_STOPWORDS = frozenset(
    """
    a an the and or of to in on at by for from with as is are was were be been has have had it its this that
    these those after before over under into about said says say will would could new also than their his her
    not but which who while when where more most other amid against up out two one
    le la les un une des du de et ou au aux en dans sur par pour avec est sont ete a ce cette ces son sa ses leur
    leurs qui que quo dont selon apres avant plus ne pas se il elle ils elles lors entre deux
    der die das ein eine und oder von zu im am mit fur auf ist sind war nach vor bei des dem den sich nicht
    и в во на с со по к из за от для о об что как это его ее их а но не также после перед был была были
    і в у на з із до від для про що як це його її їх та а але не також після
    lead urgent update updated breaking exclusive factbox analysis
    """.split()
)

# Russian and Ukrainian letters in Latin, close to the spellings wires use (Лавров ->
# lavrov, Сергей -> sergei, Курск -> kursk); soft and hard signs vanish.
_CYRILLIC = str.maketrans(
    {
        "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ж": "zh", "з": "z", "и": "i",
        "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s",
        "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch",
        "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu", "я": "ya", "і": "i", "ї": "yi", "є": "ye",
        "ґ": "g",
    }
)  # fmt: skip
# Spelling variants of one name between French, English and German transliterations,
# applied in order to a romanised word: Tchoe -> choe, Koursk -> kursk, Jong-oun -> un,
# Sergueï -> sergei, Sergey -> sergei, Choïgou -> choigu.
_VARIANTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(a), b)
    for a, b in (
        (r"tsch|tch", "ch"),
        (r"ou", "u"),
        (r"gue", "ge"),
        (r"kh", "h"),
        (r"y", "i"),
        (r"ck", "k"),
        (r"ph", "f"),
        (r"(.)\1", r"\1"),
        (r"ii", "i"),
    )
)
# Names are cut to their first five letters once keyed: Russian and Ukrainian decline
# them (Лавровым, Курске, Кима), French adds letters (Poutine), and five letters still
# tell names apart.
_NAME_STEM = 5
# Korean counts in ten-thousands and thousands (1만2천 = 12000, 1천500 = 1500); the other
# languages write "6 thousand" as a word after the figure.
_KOREAN_NUMBER_RE = re.compile(r"(?=\d+[만천])(?:(?P<man>\d+)만)?(?:(?P<chon>\d+)천)?(?P<rest>\d+)?")
_THOUSANDS_RE = re.compile(r"\b(\d{1,3})\s(?:thousand|mille|tausend|тысяч\w*|тисяч\w*)", re.IGNORECASE)
_YEARS = frozenset(str(y) for y in range(1900, 2100))
_NUMBER_RE = re.compile(
    r"(?<![\d.,])(?:(?P<grouped>\d{1,3}(?:[,.\u00a0\u202f ]\d{3})+)|(?P<decimal>\d+[.,]\d{1,2})|\d+)(?![\d])"
)


_INITIALS = ("g", "kk", "n", "d", "tt", "r", "m", "b", "pp", "s", "ss", "", "j", "jj", "ch", "k", "t", "p", "h")
_MEDIALS = (
    "a", "ae", "ya", "yae", "o", "e", "yo", "ye", "o", "wa", "wae", "oe", "yo", "u", "wo", "we", "wi", "yu", "u",
    "ui", "i",
)  # fmt: skip
_FINALS = (
    "", "k", "k", "k", "n", "n", "n", "t", "l", "k", "m", "l", "l", "l", "p", "l", "m", "p", "p", "t", "t", "ng",
    "t", "t", "k", "t", "p", "t",
)  # fmt: skip


def romanise_hangul(word: str) -> str:
    """Hangul syllables in Latin, spelled the way wires spell Korean names.

    Revised Romanization, except that ``ㅓ`` and ``ㅡ`` are ``o`` and ``u`` (``Jong``,
    ``Un``, not ``jeong``, ``eun``), a word-initial ``ㄱ`` is ``k`` (``Kim``) and ``ㅅ``
    before a ``y`` vowel is ``sh`` (``쇼이구`` -> ``shoigu``): ``김정은`` -> ``kimjongun``,
    ``최선희`` -> ``choesonhui``. Other characters pass unchanged.
    """
    out: list[str] = []
    for ch in word:
        code = ord(ch) - 0xAC00
        if not 0 <= code < 11172:
            out.append(ch)
            continue
        initial, medial, final = code // 588, (code % 588) // 28, code % 28
        onset = "k" if initial == 0 and not out else _INITIALS[initial]
        vowel = _MEDIALS[medial]
        if onset == "s" and vowel.startswith("y"):
            onset, vowel = "sh", vowel[1:]
        out.append(onset + vowel + _FINALS[final])
    return "".join(out)


def romanise(word: str) -> str:
    """Russian and Ukrainian letters of a folded *word* in Latin (``лавров`` -> ``lavrov``)."""
    return word.translate(_CYRILLIC)


def translit_key(word: str) -> str:
    """One spelling for the transliterations of a folded word (see ``_VARIANTS``).

    ``fold`` has already dropped Latin accents (``sergueï`` -> ``serguei``) and the word
    split has already cut at hyphens (``son-hui`` -> ``son hui``); Cyrillic is romanised,
    then French/English/German variants are unified. Hangul and digits pass unchanged.
    """
    key = romanise(word)
    if not key.isascii() or not key.isalpha():
        return key
    for pattern, repl in _VARIANTS:
        key = pattern.sub(repl, key)
    return key


def _korean_number(m: re.Match[str]) -> str:
    return str(sum(int(m.group(g) or 0) * unit for g, unit in (("man", 10_000), ("chon", 1000), ("rest", 1))))


def normalise_numbers(text: str) -> tuple[str, ...]:
    """The figures of *text* as plain digits, in order: ``10,000`` ``10 000`` ``10.000``
    ``10 000`` ``10 thousand`` ``10 тысяч`` ``1만`` all give ``10000``. A group of exactly
    three digits after a separator is a thousands group; one or two digits after one make
    a decimal (``1,5`` -> ``1.5``)."""
    text = _KOREAN_NUMBER_RE.sub(_korean_number, text)
    text = _THOUSANDS_RE.sub(lambda m: m.group(1) + "000", text)
    out: list[str] = []
    for m in _NUMBER_RE.finditer(text):
        if m.group("grouped"):
            out.append(re.sub(r"\D", "", m.group()))
        else:
            out.append(m.group().replace(",", "."))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Story:
    """What clustering reads of a story."""

    title: str
    summary: str
    language: str
    published: datetime
    outlet: str = ""


@dataclass(frozen=True, slots=True)
class Signature:
    """The features of one story, by kind (see the module docstring)."""

    published: datetime
    language: str
    outlet: str
    words: frozenset[str]
    shingles: frozenset[str]
    names: frozenset[str]
    title_names: frozenset[str]
    concepts: frozenset[str]
    acts: frozenset[str]
    title_acts: frozenset[str]
    issuers: frozenset[str]
    numbers: frozenset[str]

    _features: frozenset[str] = field(default=frozenset(), init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Computed once: the index and every comparison ask for it.
        every = frozenset(
            [
                *("w:" + w for w in self.words),
                *("s:" + s for s in self.shingles),
                *("n:" + n for n in self.names),
                *("t:" + n for n in self.title_names),
                *("c:" + c for c in self.concepts),
                *("a:" + a for a in self.acts),
                *("i:" + i for i in self.issuers),
                *("#:" + n for n in self.numbers),
            ]
        )
        object.__setattr__(self, "_features", every)

    def features(self) -> frozenset[str]:
        """Every feature, prefixed with its kind (``n:lavrov``, ``a:ratify``, ``#:10000``)."""
        return self._features


@dataclass(frozen=True, slots=True)
class _Lexicon:
    """Terms of one family of groups: single words, prefixes, phrases -> group names."""

    exact: Mapping[str, frozenset[str]]
    prefixes: Mapping[str, tuple[tuple[str, str], ...]]  # first two letters -> (prefix, group)
    phrases: Mapping[tuple[str, ...], frozenset[str]]
    longest: int

    def find(self, folded_words: list[str]) -> frozenset[str]:
        found: set[str] = set()
        for i, w in enumerate(folded_words):
            found.update(self.exact.get(w, ()))
            for prefix, group in self.prefixes.get(w[:2], ()):
                if w.startswith(prefix):
                    found.add(group)
            for n in range(2, self.longest + 1):
                found.update(self.phrases.get(tuple(folded_words[i : i + n]), ()))
        return frozenset(found)


def _terms(node: Node) -> Iterable[Term]:
    """The terms that make a story mention an alias group (both sides of NEAR; an excluded
    NOT term says nothing about what the story is about)."""
    if isinstance(node, Term):
        yield node
    elif isinstance(node, Near):
        yield from _terms(node.left)
        yield from _terms(node.right)
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from _terms(child)
    elif not isinstance(node, Not):
        yield from _terms(node.child)


def _lexicon(groups: Mapping[str, str], aliases: Mapping[str, str]) -> _Lexicon:
    exact: dict[str, set[str]] = {}
    prefixes: dict[str, list[tuple[str, str]]] = {}
    phrases: dict[tuple[str, ...], set[str]] = {}
    for name, text in groups.items():
        for term in _terms(parse_query(text, aliases).root):
            ws = tuple(w.rstrip("*") if w.endswith("*") else w for w in term.words)
            if len(ws) > 1:
                phrases.setdefault(ws, set()).add(name)
            elif ws and (term.words[0].endswith("*") or is_hangul(ws[0][-1])):
                prefixes.setdefault(ws[0][:2], []).append((ws[0], name))
            elif ws:
                exact.setdefault(ws[0], set()).add(name)
    return _Lexicon(
        {k: frozenset(v) for k, v in exact.items()},
        {k: tuple(v) for k, v in prefixes.items()},
        {k: frozenset(v) for k, v in phrases.items()},
        max((len(p) for p in phrases), default=1),
    )


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """The three lexicons a signature is read with: config concepts, acts, issuers."""

    concepts: _Lexicon
    acts: _Lexicon
    issuers: _Lexicon


def vocabulary(aliases: Mapping[str, str]) -> Vocabulary:
    """Build the vocabulary from the config's ``aliases:`` (one concept per alias group).

    Raises :class:`~monitor.errors.QuerySyntaxError` for an alias the parser refuses,
    exactly as config validation does.
    """
    return Vocabulary(_lexicon(aliases, aliases), _lexicon(ACTS, {}), _lexicon(ISSUERS, {}))


def _names(text: str) -> set[str]:
    """Names of the original text, folded and keyed (see :data:`_NAME_STEM`).

    Latin and Cyrillic: every capitalised word of three letters or more that is not a
    stop word (a sentence-initial common word slips in now and then, and costs only its
    weight), plus each pair of adjacent capitalised words written as one (``Kim Jong`` ->
    ``kimjo``), which is how Korean writes a name (``김정은`` -> ``kimjo``). Hangul: every
    word, romanised by :func:`romanise_hangul` (Korean has no capitals to tell names by).
    """
    out: set[str] = set()
    previous = ""
    for raw in words(unicodedata.normalize("NFKC", text)):
        if is_hangul(raw[0]):
            out.add(romanise_hangul(raw)[:_NAME_STEM])
            previous = ""
            continue
        if not raw[0].isupper():
            previous = ""
            continue
        folded = fold(raw)
        key = translit_key(folded)
        if len(raw) >= 3 and folded not in _STOPWORDS and not folded.isdigit():
            out.add(key[:_NAME_STEM])
        if previous:
            out.add((previous + key)[:_NAME_STEM])
        previous = key
    return out


def signature(story: Story, vocab: Vocabulary) -> Signature:
    """The :class:`Signature` of *story* read with *vocab*."""
    text = f"{story.title}\n{story.summary}"
    folded_words = words(fold(text))
    names = _names(text)
    content = [translit_key(w) for w in folded_words if w not in _STOPWORDS and (len(w) >= 3 or is_hangul(w[0]))]
    content = [w for w in content if not w.isdigit()]
    issuers = set(vocab.issuers.find(folded_words))
    issuers.update(_ISSUER_CAPS[w] for w in words(text) if w in _ISSUER_CAPS)
    numbers = frozenset(n for n in normalise_numbers(text) if float(n) >= 10 and n not in _YEARS)
    return Signature(
        published=story.published,
        language=story.language,
        outlet=story.outlet,
        words=frozenset(content),
        shingles=frozenset(f"{a} {b}" for a, b in zip(content, content[1:], strict=False)),
        names=frozenset(names),
        title_names=frozenset(_names(story.title)),
        concepts=vocab.concepts.find(folded_words),
        acts=vocab.acts.find(folded_words),
        title_acts=vocab.acts.find(words(fold(story.title))),
        issuers=frozenset(issuers),
        numbers=numbers,
    )
