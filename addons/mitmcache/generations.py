"""The invalidation bus: per-key generations, so a fetch that began before an invalidation never
stores its answer.

A fetch notes its key's generation when it starts (``generation``) and stores only if it is still
current when the answer arrives (``current``). Invalidating a URL bumps its generation; clearing
or purging by prefix bumps the epoch, which every generation includes (conservative: fetches of
other URLs under way then do not store either, which costs one more miss and is never wrong).
Generations are kept only for keys invalidated recently: past a bound the epoch is bumped and the
table starts afresh, so a flood of writes to distinct URLs cannot grow it.
"""

from typing import Protocol

type Generation = tuple[int, int]  # (epoch, key generation)

MAX_KEYS = 100_000


class InvalidationBus(Protocol):
    def generation(self, key: str) -> Generation: ...

    def current(self, key: str, generation: Generation) -> bool: ...

    def invalidate(self, key: str) -> None: ...

    def invalidate_all(self) -> None: ...


class LocalGenerations:
    """The in-process bus."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._epoch = 0
        self._keys: dict[str, int] = {}
        self._max_keys = max_keys

    def generation(self, key: str) -> Generation:
        return self._epoch, self._keys.get(key, 0)

    def current(self, key: str, generation: Generation) -> bool:
        return generation == (self._epoch, self._keys.get(key, 0))

    def invalidate(self, key: str) -> None:
        if key not in self._keys and len(self._keys) >= self._max_keys:
            self.invalidate_all()
        self._keys[key] = self._keys.get(key, 0) + 1

    def invalidate_all(self) -> None:
        self._epoch += 1
        self._keys.clear()
