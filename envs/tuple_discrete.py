"""A ``Tuple`` of ``Discrete`` observations as one ``Discrete`` index, and back.

Tabular agents index a table by one integer state, but some toy-text envs observe a tuple of
small integers: Blackjack-v1's ``(player sum, dealer's card, usable ace)`` lives in
``Tuple(Discrete(32), Discrete(11), Discrete(2))``. :class:`TupleToDiscrete` numbers such
tuples in mixed radix, the first member most significant (NumPy's C order, as
``np.ravel_multi_index``)::

    index = ((o_0 - start_0) * n_1 + (o_1 - start_1)) * n_2 + (o_2 - start_2)

so Blackjack's ``(21, 10, 1)`` is ``(21 * 11 + 10) * 2 + 1 = 483`` of ``32 * 11 * 2 = 704``
states, and :meth:`TupleToDiscrete.unflatten` turns an index back into the tuple. Tabular
agents apply the wrapper by themselves (:func:`discrete_observations`) when given such an env.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from mpgym.errors import MpgymError

Radix = tuple[tuple[int, ...], tuple[int, ...]]
"""``(sizes, starts)`` of the members of a Tuple of Discrete spaces."""


def tuple_radix(space: gym.Space) -> Radix:
    """``(sizes, starts)`` of the members of ``space``, a ``Tuple`` of ``Discrete`` spaces.

    Example:
        >>> tuple_radix(gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Discrete(2, start=1))))
        ((3, 2), (0, 1))

    Raises:
        MpgymError: ``space`` is not a Tuple, is empty, or has a member that is not Discrete.
    """
    if not isinstance(space, gym.spaces.Tuple) or not space.spaces:
        raise MpgymError(f"expected a non-empty Tuple of Discrete spaces, got {space}.")
    bad = [f"{i}: {s}" for i, s in enumerate(space.spaces)
           if not isinstance(s, gym.spaces.Discrete)]
    if bad:
        raise MpgymError(f"a Tuple observation space can be numbered for tabular agents only when "
                         f"every member is Discrete; {space} has {', '.join(bad)}. Use a deep "
                         "agent (dqn, ppo...) for other spaces.")
    members = [s for s in space.spaces if isinstance(s, gym.spaces.Discrete)]
    return tuple(int(s.n) for s in members), tuple(int(s.start) for s in members)


def flatten_tuple(obs: Any, radix: Radix) -> Any:
    """The mixed-radix index of ``obs`` (a tuple of ints, or of equal-shape int arrays).

    Example:
        >>> flatten_tuple((21, 10, 1), ((32, 11, 2), (0, 0, 0)))
        483

    Returns:
        An ``int`` for a tuple of ints, else an int64 array of the members' shape.

    Raises:
        MpgymError: wrong number of members, or a member outside its space.
    """
    sizes, starts = radix
    if len(obs) != len(sizes):
        raise MpgymError(f"observation {obs!r} has {len(obs)} members; the space has "
                         f"{len(sizes)}.")
    digits = tuple(np.asarray(o, dtype=np.int64) - st for o, st in zip(obs, starts, strict=True))
    try:
        index = np.ravel_multi_index(digits, sizes)
    except ValueError:
        ranges = ", ".join(f"{st}..{st + n - 1}" for n, st in zip(sizes, starts, strict=True))
        raise MpgymError(f"observation {obs!r} is outside the space (members in {ranges}).") \
            from None
    return int(index) if np.ndim(index) == 0 else index


def unflatten_index(index: Any, radix: Radix) -> tuple[Any, ...]:
    """The tuple whose mixed-radix index is ``index`` (inverse of :func:`flatten_tuple`).

    Example:
        >>> unflatten_index(483, ((32, 11, 2), (0, 0, 0)))
        (21, 10, 1)

    Raises:
        MpgymError: ``index`` outside ``0..prod(sizes) - 1``.
    """
    sizes, starts = radix
    total = int(np.prod(sizes))
    arr = np.asarray(index, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= total):
        raise MpgymError(f"index {index!r} is outside 0..{total - 1}.")
    digits = np.unravel_index(arr, sizes)
    if arr.ndim == 0:
        return tuple(int(d) + st for d, st in zip(digits, starts, strict=True))
    return tuple(d + st for d, st in zip(digits, starts, strict=True))


class TupleToDiscrete(gym.ObservationWrapper):
    """Observe one ``Discrete`` index instead of a ``Tuple`` of ``Discrete`` members.

    Attributes:
        radix: ``(sizes, starts)`` of the wrapped space's members.

    Example:
        >>> env = TupleToDiscrete(gym.make("Blackjack-v1"))
        >>> env.observation_space, env.unflatten(483)
        (Discrete(704), (21, 10, 1))
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.radix = tuple_radix(env.observation_space)
        self.observation_space = gym.spaces.Discrete(int(np.prod(self.radix[0])))

    def observation(self, observation: Any) -> Any:
        """The index of ``observation`` (see :func:`flatten_tuple`)."""
        return flatten_tuple(observation, self.radix)

    def unflatten(self, index: Any) -> tuple[Any, ...]:
        """The wrapped env's observation whose index is ``index``."""
        return unflatten_index(index, self.radix)


def discrete_observations(env: gym.Env) -> gym.Env:
    """``env`` wrapped in :class:`TupleToDiscrete` when it observes a ``Tuple``, else ``env``.

    Raises:
        MpgymError: a Tuple with a member that is not Discrete.
    """
    if isinstance(env.observation_space, gym.spaces.Tuple):
        return TupleToDiscrete(env)
    return env


__all__ = ["Radix", "TupleToDiscrete", "discrete_observations", "flatten_tuple", "tuple_radix",
           "unflatten_index"]
