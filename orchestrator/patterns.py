"""The one glob dialect: ``config.yaml`` keys, ``skip:``, ``watch:`` and ``-k``.

A :class:`Glob` matches a POSIX path relative to a base folder (the scripts
directory, or the project root for ``watch:``):

* ``*`` and ``?`` stay within one path part, ``[seq]``/``[!seq]`` as in
  fnmatch, except that an unclosed ``[`` is an error (``[[]`` is a literal
  bracket); ``**`` spans any number of parts (``data/**/*.csv``);
* a pattern that names a folder covers everything below it (``data`` and
  ``data/`` match ``data/x.py``);
* a leading ``./`` and surrounding slashes are ignored.

``-k`` uses the same rules against a script's relative path, and also
against its bare file name, so ``-k '*_check.py'`` finds checks at any depth.
"""

from __future__ import annotations

import functools
import re

__all__ = ["Glob"]

_WILD = frozenset("*?[")


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif char == "*":
            out.append("[^/]*")
            i += 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[":
            # fnmatch's classes: [seq], [!seq], a leading "]" is literal; never "/".
            j = i + 1
            negated = j < n and pattern[j] == "!"
            j += negated
            if j < n and pattern[j] == "]":
                j += 1
            end = pattern.find("]", j)
            if end == -1:
                # fnmatch would take it literally; in a config key it is nearly always a typo.
                raise re.error("unclosed '['")
            else:
                body = pattern[i + 1 + negated : end].replace("/", "")
                members = "".join(c if c == "-" else re.escape(c) for c in body)
                out.append(f"[^/{members}]" if negated else f"[{members}]")
                i = end + 1
        else:
            out.append(re.escape(char))
            i += 1
    # A pattern also covers everything below a folder it names.
    return "".join(out) + r"(?:/.*)?\Z"


class Glob:
    """One pattern of the dialect above; build it with :meth:`of` (cached)."""

    __slots__ = ("_regex", "pattern", "text")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        text = pattern.strip().strip("/")
        self.text = text[2:] if text.startswith("./") else text
        # A literal needs no regex: compiling one costs ~0.3 ms, and a config of
        # 10,000 script keys is mostly literals. Raises re.error for what no
        # path could match (config validation reports it).
        self._regex = None if self.literal else re.compile(_translate(self.text))

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def of(pattern: str) -> Glob:
        """The glob of ``pattern``, compiled once per process."""
        return Glob(pattern)

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"

    def matches(self, rel: str) -> bool:
        """Whether the POSIX relative path ``rel`` matches (or lies below a folder it names)."""
        if self._regex is None:
            text = self.text
            return rel == text or (rel.startswith(text) and rel[len(text) : len(text) + 1] == "/")
        return self._regex.match(rel) is not None

    @property
    def literal(self) -> bool:
        """No wildcard: the pattern names one path (and what is below it)."""
        return not _WILD.intersection(self.text)

    @property
    def fixed(self) -> str:
        """The leading parts without a wildcard (``data`` for ``data/*.csv``): where to look."""
        parts: list[str] = []
        for part in self.text.split("/"):
            if _WILD.intersection(part):
                break
            parts.append(part)
        return "/".join(parts)

    @property
    def depth(self) -> int | None:
        """How many folders below :attr:`fixed` a matching file lies; None: any number.

        A literal names a folder whose whole content matches, ``**`` spans
        folders; otherwise each wildcard part is taken to match one name (a
        wildcard that matches a folder covers it too, but ``watch:`` lists files).
        """
        if self.literal or "**" in self.text:
            return None
        fixed = len(self.fixed.split("/")) if self.fixed else 0
        return len(self.text.split("/")) - fixed - 1
