"""An ensemble's members: every combination of the values given to the per-member flags (``--seed``, ``--lr``,
``--reconstruction-weight``), each member a ``RunConfig`` of its own and a name that says its values.

Member k with values (s, l, w) is the run ``--seed s --lr l --reconstruction-weight w``: its folder
``OUT/members/NAME`` is a run folder in the single-run format. Members that differ only in their seed share a
*setting*, over which the ensemble's report takes means and standard deviations.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

from jaxvae.run.config import PER_MEMBER, RunConfig, flag_name


@dataclass(frozen=True)
class Member:
    name: str
    config: RunConfig

    @property
    def setting(self) -> tuple[float, float]:
        """What the members of one setting share: (lr, reconstruction weight)."""
        return self.config.lr, self.config.reconstruction_weight

    def values(self) -> dict:
        return {name: getattr(self.config, name) for name in PER_MEMBER}


def number(value) -> str:
    """The shortest text that reads back as ``value``: 1.0 -> "1", 0.0005 -> "0.0005", 1e-05 -> "1e-05"."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def member_name(config: RunConfig) -> str:
    """The folder name of the member with ``config``'s values: ``seed1_lr0.0005_rw1``."""
    return f"seed{config.seed}_lr{number(config.lr)}_rw{number(config.reconstruction_weight)}"


def member_grid(base: RunConfig, lists: dict[str, tuple]) -> list[Member]:
    """Every combination of ``lists`` (per-member field -> values; the field's order of ``PER_MEMBER``, the
    values in the order given), on top of ``base``."""
    names = [name for name in PER_MEMBER if name in lists]
    members = []
    for combination in itertools.product(*(lists[name] for name in names)):
        config = dataclasses.replace(base, **dict(zip(names, combination)))
        members.append(Member(member_name(config), config))
    return members


def describe_lists(lists: dict[str, tuple]) -> str:
    """The flags as given, for messages: ``--seed 1,2 --lr 0.0005``."""
    shown = [name for name in PER_MEMBER if name in lists]
    return " ".join(f"{flag_name(name)} {','.join(number(v) for v in lists[name])}" for name in shown)
