"""The owner's CKKS keys (:class:`OwnerKeys`) and the public evaluation context everyone else loads
(:func:`load_public_context`).

The owner keeps the secret key; it publishes a context serialized WITHOUT it (and without Galois
keys: the batched layout never rotates, which keeps the context near 1.9 MB at N = 8192 instead
of ~35 MB). :func:`public_context_bytes` refuses to serialize a context that still holds a secret
key, and :func:`load_public_context` refuses one that carries it or whose parameters are not the
ones recorded for it.
"""

from __future__ import annotations

import tenseal as ts

from din_lab.he.params import HEParameterError, HEParams, SecretKeyError

__all__ = ["OwnerKeys", "check_parameters", "load_public_context", "public_context_bytes"]


def _context_parameters(ctx: ts.Context) -> tuple[int, int, int]:
    """(ring degree, total coefficient-modulus bits, levels below the key level) as SEAL reports them."""
    data = ctx.seal_context().data
    key = data.key_context_data()
    return (key.parms().poly_modulus_degree(), key.total_coeff_modulus_bit_count(),
            data.first_context_data().chain_index())


def check_parameters(ctx: ts.Context, params: HEParams) -> None:
    """:class:`HEParameterError` unless ``ctx`` was made with ``params`` (degree, modulus, levels)."""
    degree, bits, chain = _context_parameters(ctx)
    want = (params.poly_modulus_degree, sum(params.coeff_mod_bit_sizes), len(params.coeff_mod_bit_sizes) - 2)
    if (degree, bits, chain) != want:
        raise HEParameterError(f"the context has N = {degree}, {bits} modulus bits and {chain} levels; the "
                               f"recorded parameters {params.to_json()} need N = {want[0]}, {want[1]} bits and "
                               f"{want[2]} levels")
    if round(ctx.global_scale) != 2 ** params.scale_bits:
        raise HEParameterError(f"the context's scale is {ctx.global_scale:g}, the recorded one 2^{params.scale_bits}")


class OwnerKeys:
    """The model owner's CKKS context with its secret key. Encrypts the test set, decrypts the
    committee-agreed outputs, and publishes :meth:`public_context` (no secret key)."""

    def __init__(self, params: HEParams) -> None:
        self.params = params
        self._context = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=params.poly_modulus_degree,
                                   coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes))
        self._context.global_scale = 2.0 ** params.scale_bits
        self._context.generate_relin_keys()  # square activations multiply two ciphertexts

    @property
    def context(self) -> ts.Context:
        """The private context (encrypt and decrypt); never published."""
        return self._context

    def public_context(self) -> bytes:
        """The evaluation context without the secret key (and without Galois keys)."""
        public = self._context.copy()
        public.make_context_public()
        return public_context_bytes(public)


def public_context_bytes(ctx: ts.Context) -> bytes:
    """Serialize a context for publishing; :class:`SecretKeyError` if it holds a secret key."""
    if ctx.is_private() or ctx.has_secret_key():
        raise SecretKeyError("this context holds the secret key: publishing it would let anyone decrypt the test "
                             "set and every evaluation (use OwnerKeys.public_context)")
    return ctx.serialize(save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=True)


def load_public_context(data: bytes, *, params: HEParams) -> ts.Context:
    """Load a published evaluation context; :class:`SecretKeyError` if it carries a secret key,
    :class:`HEParameterError` if it is malformed or not made with ``params``."""
    try:
        ctx = ts.context_from(bytes(data))
    except (ValueError, RuntimeError, TypeError) as e:
        raise HEParameterError(f"not a TenSEAL context: {e}") from e
    if ctx.is_private() or ctx.has_secret_key():
        raise SecretKeyError("the published evaluation context carries the secret key; refusing it")
    check_parameters(ctx, params)
    return ctx
