"""The TFHE server: evaluates encrypted inputs with evaluation keys only.

    server = TfheServer(files, client.evaluation_keys())   # files: the artifact's tfhe files
    reply = server.run(request)                            # bytes in, bytes out

It holds concrete's compiled program and the client's evaluation keys, never a secret
key, and never imports the client module (a test checks it). Requests are checked to
belong to this program and to these evaluation keys before concrete sees them.
"""

from __future__ import annotations

from collections.abc import Mapping

from fhec.backends.tfhe.files import HEADER, MLIR, SPECS, Message, digest, read_header
from fhec.backends.tfhe.program import ServerProgram, load_program
from fhec.ir.errors import InputError


class TfheServer:
    def __init__(self, files: Mapping[str, bytes], evaluation_keys: bytes) -> None:
        """`files`: the circuit's artifact files (`circuit.to_files()`, or an artifact's
        extra files); `evaluation_keys`: the bytes the client's `evaluation_keys()` gives."""
        from concrete import fhe

        self.program: ServerProgram = load_program(files, read_header(files, (HEADER, MLIR, SPECS)))
        self.keys_id = digest(evaluation_keys)
        try:
            self._keys = fhe.EvaluationKeys.deserialize(evaluation_keys)
        except (RuntimeError, ValueError) as exc:
            raise InputError(
                f"the evaluation keys are not concrete evaluation keys ({exc})"
            ) from None

    def run(self, request: bytes) -> bytes:
        """The encrypted outputs for the encrypted inputs in `request` (one batch)."""
        from concrete import fhe

        message = Message.from_bytes(request, "inputs")
        message.check(self.program.program_id, self.keys_id)
        try:
            arguments = [fhe.Value.deserialize(value) for value in message.values]
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"the encrypted inputs are not concrete values ({exc})") from None
        results = self.program.run(arguments, self._keys)
        reply = Message(
            "outputs",
            message.program,
            message.keys,
            message.request,
            tuple(result.serialize() for result in results),
        )
        return reply.to_bytes()
