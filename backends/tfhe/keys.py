"""The client's secret: concrete's keyset for one circuit, and encryption with it."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from concrete import fhe


class ClientKeys:
    """Secret and evaluation keys for the program described by `client_specs`."""

    def __init__(self, client_specs: fhe.ClientSpecs, keys: bytes | None = None) -> None:
        from concrete import fhe

        self._client = fhe.Client(client_specs)
        if keys is not None:
            self._client.keys = fhe.Keys.deserialize(keys)

    def generate(self) -> None:
        """Fresh keys from the operating system's randomness (concrete's seeds are
        128-bit; giving them explicitly keeps key generation from depending on a
        default seed)."""
        self._client.keygen(
            force=True, secret_seed=secrets.randbits(128), encryption_seed=secrets.randbits(128)
        )

    @property
    def generated(self) -> bool:
        keys = self._client.keys
        return keys is not None and keys.are_generated

    def _ensure(self) -> None:
        if not self.generated:
            self.generate()

    def serialize(self) -> bytes:
        """Secret and evaluation keys together, in concrete's format: keep them private."""
        self._ensure()
        keys = self._client.keys
        assert keys is not None
        return bytes(keys.serialize())

    def evaluation_keys(self) -> fhe.EvaluationKeys:
        self._ensure()
        return self._client.evaluation_keys

    def encrypt(self, arguments: Sequence[np.ndarray]) -> list[fhe.Value]:
        self._ensure()
        encrypted = self._client.encrypt(*arguments)
        items = list(encrypted) if isinstance(encrypted, tuple) else [encrypted]
        return [item for item in items if item is not None]

    def decrypt(self, results: Sequence[fhe.Value]) -> list[np.ndarray]:
        self._ensure()
        decrypted = self._client.decrypt(*results)
        items = (
            list(decrypted) if len(results) > 1 and isinstance(decrypted, tuple) else [decrypted]
        )
        return [np.asarray(item, dtype=np.int64) for item in items]
