"""Secret values, and masking them in everything orch writes.

A value is secret when the name of the environment variable that holds it
looks secret (:data:`SECRET_NAME`), or is listed under the config's
``secrets:``. Its masked forms are the raw value, each of its lines (a
private key is printed a line at a time), and its JSON-escaped, URL-encoded
and base64 forms; base64 also inside a longer encoding (``user:token`` in a
Basic auth header), at each of the three alignments. Values shorter than
:data:`MIN_SECRET` characters are left alone: masking ``on`` or ``1234``
everywhere would hide more than it protects.

The masker is applied where text enters orch (a script's streams, as they are
read; a result's error; the settings and command a run shows), so every
output built from it is masked, whatever its format.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MASK", "MIN_SECRET", "SECRET_NAME", "Masker", "StreamMask", "looks_secret"]

#: What a secret reads as once masked.
MASK = "***"
#: The shortest value masked, in characters.
MIN_SECRET = 6
#: Names whose values are secret: ``*TOKEN*``, ``*SECRET*``, ... in any case.
SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|PRIVATE_KEY|CREDENTIAL|AUTH", re.IGNORECASE
)


@functools.lru_cache(maxsize=4096)
def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says its value is secret."""
    # Cached: each script's start asks this of every variable in the environment.
    return SECRET_NAME.search(name) is not None


def _base64_forms(raw: bytes) -> set[str]:
    import base64

    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode("ascii")
        forms.update((whole, whole.rstrip("=")))
        # Inside a longer encoding the value starts at byte offset 0, 1 or 2 of a
        # 3-byte group: only the characters made of its bits alone are fixed.
        for shift in range(3):
            encoded = encode(b"\0" * shift + raw).decode("ascii")
            first, end = -(-8 * shift // 6), 8 * (shift + len(raw)) // 6
            forms.add(encoded[first:end])
    return forms


def _forms(value: str) -> set[str]:
    """Every spelling of ``value`` that is masked (those of at least MIN_SECRET characters)."""
    # Here, not at import: config imports this module on every command's start-up.
    from urllib.parse import quote, quote_plus

    pieces = {value}
    if "\n" in value:
        pieces.update(line.strip() for line in value.splitlines())
    forms: set[str] = set()
    for piece in pieces:
        if len(piece) < MIN_SECRET:
            continue
        forms.update(
            (
                piece,
                json.dumps(piece)[1:-1],
                json.dumps(piece, ensure_ascii=False)[1:-1],
                quote(piece, safe=""),
                quote(piece),
                quote_plus(piece),
            )
        )
        forms.update(_base64_forms(piece.encode("utf-8")))
    return {form for form in forms if len(form) >= MIN_SECRET}


_Patterns = tuple[
    "re.Pattern[str] | None", "re.Pattern[bytes] | None", int, tuple[str, ...], tuple[bytes, ...]
]


@functools.lru_cache(maxsize=64)
def _compiled(values: frozenset[str]) -> _Patterns:
    forms = set().union(*map(_forms, values)) if values else set()
    if not forms:
        return None, None, 0, (), ()
    # Longest first: at one position the longer spelling wins (padded base64, a
    # value that starts with another one).
    ordered = sorted(forms, key=lambda form: (-len(form), form))
    text = re.compile("|".join(map(re.escape, ordered)))
    raw = [form.encode("utf-8") for form in ordered]
    data = re.compile(b"|".join(map(re.escape, raw)))
    return text, data, max(map(len, raw)), tuple(ordered), tuple(raw)


class Masker:
    """Replaces every form of a set of secret values with :data:`MASK`.

    A masker with no values (``Masker()``) changes nothing and costs nothing.
    It pickles by its values, so a Dask worker gets the same one.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values = frozenset(v for v in values if len(v) >= MIN_SECRET)
        self._text, self._data, self.longest, self._forms, self._raw = _compiled(self.values)

    @classmethod
    def of(cls, variables: Iterable[tuple[str, str]], names: Iterable[str] = ()) -> Masker:
        """The masker of the secret ones among ``(name, value)`` pairs.

        A pair is secret when its name looks secret or is one of ``names``.
        """
        listed = set(names)
        return cls(
            value
            for name, value in variables
            if isinstance(value, str) and (name in listed or looks_secret(name))
        )

    @classmethod
    def of_environment(cls, env: Mapping[str, str], names: Iterable[str] = ()) -> Masker:
        """The masker of an environment's secret variables."""
        return cls.of(env.items(), names)

    def __bool__(self) -> bool:
        return self._text is not None

    def __or__(self, other: Masker) -> Masker:
        if not other.values - self.values:
            return self
        return Masker(self.values | other.values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Masker) and other.values == self.values

    def __hash__(self) -> int:
        return hash(self.values)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Masker, (tuple(self.values),))

    def __repr__(self) -> str:
        return f"Masker(<{len(self.values)} secret values>)"  # never the values

    def mask(self, text: str) -> str:
        """``text`` with every form of every secret value replaced by :data:`MASK`."""
        # Looking for each form first is ~5x quicker than the regex when none is there.
        if self._text is None or not any(form in text for form in self._forms):
            return text
        return self._text.sub(MASK, text)

    def mask_bytes(self, data: bytes) -> bytes:
        """The same for bytes (forms encoded as UTF-8)."""
        if self._data is None or not any(form in data for form in self._raw):
            return data
        return self._data.sub(MASK.encode(), data)

    def mask_data(self, value: Any) -> Any:
        """Strings masked inside nested dicts, lists and tuples (keys too); other values kept."""
        if self._text is None:
            return value
        if isinstance(value, str):
            return self.mask(value)
        if isinstance(value, Mapping):
            return {self.mask_data(k): self.mask_data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.mask_data(item) for item in value)
        return value

    def stream(self) -> StreamMask:
        """A masker for one stream read in pieces."""
        return StreamMask(self)


class StreamMask:
    """Masks a byte stream fed in arbitrary pieces.

    A value split across two reads is still masked: the last ``longest - 1``
    bytes are held back until the next piece (or :meth:`end`) shows whether
    they start a secret.
    """

    def __init__(self, masker: Masker) -> None:
        self._pattern = masker._data
        self._raw = masker._raw
        self._hold = max(0, masker.longest - 1)
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """The masked bytes that can be given out now."""
        if self._pattern is None:
            return data
        buffer = self._held + data
        cut = len(buffer) - self._hold
        if not any(form in buffer for form in self._raw):  # the common case, quickly
            out_to = max(cut, 0)
            self._held = buffer[out_to:]
            return buffer[:out_to]
        pieces: list[bytes] = []
        done = 0
        for match in self._pattern.finditer(buffer):
            if match.start() >= cut:
                break  # may be the start of a longer form: decided with the next piece
            pieces += (buffer[done : match.start()], MASK.encode())
            done = match.end()
        out_to = max(cut, done)
        pieces.append(buffer[done:out_to])
        self._held = buffer[out_to:]
        return b"".join(pieces)

    def end(self) -> bytes:
        """The rest, masked: the stream is over."""
        if self._pattern is None:
            return b""
        held, self._held = self._held, b""
        return self._pattern.sub(MASK.encode(), held)
