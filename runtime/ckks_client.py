"""The CKKS client: the one party that holds the secret key.

    client = CkksClient(module, signature)          # generates a key set
    server = CkksServer(module, client.evaluation_keys())
    reply = server.run(client.encrypt({"x": x}))
    outputs = client.decrypt(reply)

Everything between the two parties is bytes (SEAL's serialization in a checked
envelope: see backends/ckks/serialization.py). `secret_keys()` exports the whole
key set for the client's own storage; never send it to the server.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fhec.backends.ckks.circuit import CkksCircuit
from fhec.backends.ckks.seal_context import Encryptor, SecretKeys
from fhec.backends.ckks.serialization import (
    CipherTensor,
    dump_ciphertexts,
    dump_evaluation_keys,
    dump_secret_keys,
    load_ciphertexts,
    load_secret_keys,
)
from fhec.ir.errors import InputError
from fhec.ir.graph import Module
from fhec.ir.signature import Signature


class CkksClient:
    def __init__(self, module: Module, signature: Signature, keys: bytes | None = None) -> None:
        """A client for the compiled `module`: a fresh key set, or the one in `keys`
        (bytes from `secret_keys()`, checked to belong to this module's parameters)."""
        self._circuit = CkksCircuit(module, signature)
        context = self._circuit.context
        self._keys = (
            SecretKeys.generate(context, self._circuit.rotations)
            if keys is None
            else load_secret_keys(keys, context)
        )
        self._encryptor = Encryptor(context, self._keys)

    @property
    def key_id(self) -> str:
        return self._keys.key_id

    @property
    def error_bound(self) -> dict[str, float]:
        return dict(self._circuit.error_bound)

    def evaluation_keys(self) -> bytes:
        """What the server needs: public, relinearization and the circuit's Galois keys
        (no secret key)."""
        return dump_evaluation_keys(self._keys.evaluation, self._circuit.context)

    def secret_keys(self) -> bytes:
        return dump_secret_keys(self._keys, self._circuit.context)

    def encrypt(self, inputs: Mapping[str, np.ndarray]) -> bytes:
        """The secret inputs, encrypted (public inputs go to the server as arrays)."""
        prepared = self._circuit.encrypt(self._encryptor, inputs)
        tensors = {name: v for name, v in prepared.items() if isinstance(v, CipherTensor)}
        return dump_ciphertexts(tensors, self._circuit.context, self._keys.key_id)

    def decrypt(self, data: bytes) -> dict[str, np.ndarray]:
        """The outputs in `data` (the server's reply), checked to be for this key set."""
        tensors, _ = load_ciphertexts(data, self._circuit.context, self._keys.key_id)
        expected = self._circuit.server_output_names
        if set(tensors) - expected:
            raise InputError(
                f"the reply holds {sorted(set(tensors) - expected)}, not outputs of this model"
            )
        return self._circuit.decrypt(self._encryptor, tensors)
