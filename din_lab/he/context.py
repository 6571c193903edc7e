"""The owner's CKKS keys (:class:`OwnerKeys`) and the public evaluation context everyone else loads
(:func:`load_public_context`).

The owner keeps the secret key; it publishes a context serialized WITHOUT it (and without Galois
keys: the batched layout never rotates, which keeps the context near 0.25 MB at N = 4096 and
1.9 MB at N = 8192 instead of ~35 MB). :func:`public_context_bytes` refuses to serialize a context that still holds a secret
key, and :func:`load_public_context` refuses one that carries it or whose parameters are not the
ones recorded for it.
"""

from __future__ import annotations

import tenseal as ts

from din_lab.he.params import HEParameterError, HEParams, SecretKeyError

__all__ = ["OwnerKeys", "check_parameters", "load_public_context", "public_context_bytes"]


def _prime_sizes(ctx: ts.Context) -> tuple[int, tuple[int, ...]]:
    """(ring degree, prime bit sizes data-first, special last) as SEAL reports them: each level of
    the modulus chain drops one prime, so the sizes are the differences of the levels' totals."""
    data = ctx.seal_context().data
    level = data.key_context_data()
    degree = level.parms().poly_modulus_degree()
    totals = []
    while level is not None:
        totals.append(level.total_coeff_modulus_bit_count())
        level = level.next_context_data()
    drops = [a - b for a, b in zip(totals, totals[1:], strict=False)]  # special prime first, then middles
    return degree, (totals[-1], *reversed(drops[1:]), drops[0]) if drops else (totals[-1],)


def check_parameters(ctx: ts.Context, params: HEParams) -> None:
    """:class:`HEParameterError` unless ``ctx`` is a CKKS context made with ``params`` (degree, every
    prime's size, scale)."""
    try:
        degree, primes = _prime_sizes(ctx)
        scale = ctx.global_scale
    except (ValueError, RuntimeError, AttributeError) as e:  # e.g. a BFV context has no global scale
        raise HEParameterError(f"not a CKKS context with a global scale: {e}") from e
    if degree != params.poly_modulus_degree or primes != params.coeff_mod_bit_sizes:
        raise HEParameterError(f"the context has N = {degree} and primes {list(primes)}; the recorded parameters "
                               f"{params.to_json()} need N = {params.poly_modulus_degree} and primes "
                               f"{list(params.coeff_mod_bit_sizes)}")
    if round(scale) != 2 ** params.scale_bits:
        raise HEParameterError(f"the context's scale is {scale:g}, the recorded one 2^{params.scale_bits}")


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
    try:
        private = ctx.is_private() or ctx.has_secret_key()
        public_key = ctx.has_public_key()
    except (ValueError, RuntimeError) as e:  # e.g. a symmetric-key context
        raise HEParameterError(f"not a public-key CKKS context: {e}") from e
    if private:
        raise SecretKeyError("the published evaluation context carries the secret key; refusing it")
    if not public_key:
        raise HEParameterError("the published evaluation context has no public key")
    check_parameters(ctx, params)
    return ctx
