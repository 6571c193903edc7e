"""din_lab.he: encrypted evaluation with CKKS (TenSEAL), paper section 5.2 and threat-model points
six and seven: the model owner's test set is published homomorphically encrypted, evaluators score
participants' models on it without reading it, and only the owner (the key holder) decrypts the
committee-agreed outputs.

Pure functions and values over TenSEAL and numpy; no chain, no store (the protocol layer carries
the bytes and records CIDs and digests on chain).

- :mod:`~din_lab.he.params`: :class:`HEParams` per model depth (depth 1: N = 4096; depth 3: N =
  16384) and the error types.
- :mod:`~din_lab.he.context`: the owner's :class:`OwnerKeys`; the public context serialized without
  the secret key (refused if it carries one) and checked against the recorded parameters.
- :mod:`~din_lab.he.ciphertexts`: the batched layout (samples in slots, one ciphertext per feature
  and chunk: no rotations, no Galois keys) as deterministic bytes with a digest.
- :mod:`~din_lab.he.evaluation`: :class:`HEModel` (linear and square layers), its depth checked
  against the parameters before any work, evaluated with deterministic operations only, so every
  honest evaluator produces byte-identical outputs and committees agree by digest.
- :mod:`~din_lab.he.pool`: :class:`EvaluationPool`, the same evaluation on worker processes (TenSEAL
  holds the GIL), with the same bytes.

Trust assumption, stated plainly: the owner decrypts, so it could misreport a decryption. The owner
must also never publish raw decryptions: with the public output ciphertexts, exact CKKS decryptions
reveal the secret key (Li and Micciancio, 2021); it publishes scores derived from them.
Byte-identical outputs assume every evaluator runs the same TenSEAL build (pinned: 0.3.18). What an
auditor needs to check it later is public: the encrypted test set, the public context and the
committee-agreed output ciphertexts (by digest); the owner's decryption cannot be re-checked
without its key, which it may be asked to reveal after the task (the test set is then public).
"""

from din_lab.he.ciphertexts import EncryptedTable, encrypt_test_set, framed, read_framed
from din_lab.he.context import OwnerKeys, check_parameters, load_public_context, public_context_bytes
from din_lab.he.evaluation import HEModel, Linear, Square, evaluate
from din_lab.he.params import HEDepthError, HEError, HEParameterError, HEParams, SecretKeyError, params_for_depth
from din_lab.he.pool import EvaluationPool

__all__ = [
    "EncryptedTable",
    "EvaluationPool",
    "HEDepthError",
    "HEError",
    "HEModel",
    "HEParameterError",
    "HEParams",
    "Linear",
    "OwnerKeys",
    "SecretKeyError",
    "Square",
    "check_parameters",
    "encrypt_test_set",
    "evaluate",
    "framed",
    "load_public_context",
    "params_for_depth",
    "public_context_bytes",
    "read_framed",
]
