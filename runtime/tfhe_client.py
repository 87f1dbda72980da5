"""The TFHE client: the one party that holds the secret key.

    client = TfheClient(module, signature, files)      # generates a key set
    server = TfheServer(files, client.evaluation_keys())
    request = client.encrypt({"x": x})                 # one batch of the compiled shapes
    outputs = client.decrypt(server.run(request))

The client quantizes its inputs and runs, in clear, what comes before encryption and
after decryption (dequantization, the last layer's bias and activation). Keys and
ciphertexts are concrete's own serialization inside fhec messages (files.py).
`secret_keys()` exports the whole key set for the client's own storage: never send it.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

import numpy as np

from fhec.backends.tfhe.codec import Codec, Encoded
from fhec.backends.tfhe.files import SPECS, Message, digest, program_info
from fhec.backends.tfhe.keys import ClientKeys
from fhec.ir.errors import ArtifactError, InputError
from fhec.ir.graph import Module
from fhec.ir.signature import Signature
from fhec.runtime.batching import check_inputs, compiled_batch_size


class TfheClient:
    def __init__(
        self,
        module: Module,
        signature: Signature,
        files: Mapping[str, bytes],
        keys: bytes | None = None,
    ) -> None:
        """A client for the compiled `module`: fresh keys, or those in `keys` (bytes from
        `secret_keys()`)."""
        from concrete import fhe

        if SPECS not in files:
            raise ArtifactError(f"the TFHE artifact lacks {SPECS}", hint="compile the model again")
        try:
            specs = fhe.ClientSpecs.deserialize(files[SPECS])
            self.program_id = digest(program_info(files[SPECS]))
        except (RuntimeError, ValueError) as exc:
            raise ArtifactError(f"the TFHE artifact's {SPECS} is corrupted ({exc})") from None
        self.signature = signature
        self.codec = Codec(module)
        try:
            self._keys = ClientKeys(specs, keys)
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"the keys are not a concrete key set ({exc})") from None
        if keys is None:
            self._keys.generate()
        self._evaluation_keys = bytes(self._keys.evaluation_keys().serialize())
        self.keys_id = digest(self._evaluation_keys)
        self._pending: dict[str, Encoded] = {}

    def evaluation_keys(self) -> bytes:
        """What the server needs (bootstrap and key-switching keys; no secret key)."""
        return self._evaluation_keys

    def secret_keys(self) -> bytes:
        return self._keys.serialize()

    def encrypt(self, inputs: Mapping[str, np.ndarray]) -> bytes:
        """One batch of the compiled input shapes, quantized and encrypted."""
        checked, samples = check_inputs(self.signature, inputs)
        size = compiled_batch_size(self.signature)
        if size is not None and samples != size:
            raise InputError(
                f"the client encrypts one batch of {size} sample(s) at a time, got {samples}",
                hint="split the inputs into batches of the compiled batch size",
            )
        encoded = self.codec.encode(checked)
        request = secrets.token_hex(8)
        self._pending[request] = encoded
        values = tuple(v.serialize() for v in self._keys.encrypt(encoded.arguments))
        return Message("inputs", self.program_id, self.keys_id, request, values).to_bytes()

    def decrypt(self, reply: bytes) -> dict[str, np.ndarray]:
        """The outputs for the server's `reply` to one of this client's requests."""
        from concrete import fhe

        message = Message.from_bytes(reply, "outputs")
        message.check(self.program_id, self.keys_id)
        encoded = self._pending.pop(message.request, None)
        if encoded is None:
            raise InputError("this reply answers no pending request of this client")
        try:
            results = [fhe.Value.deserialize(value) for value in message.values]
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"the encrypted outputs are not concrete values ({exc})") from None
        return self.codec.decode(encoded, self._keys.decrypt(results))
