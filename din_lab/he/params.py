"""CKKS parameters per model depth (:class:`HEParams`), and the errors of encrypted evaluation.

A model's multiplicative depth is what its evaluation consumes: one level per linear layer (a
plaintext-weight multiply, rescaled) and one per square activation (a ciphertext product). The
last linear layer is not rescaled (:mod:`din_lab.he.evaluation`): its products stay at scale
2^80, which must still fit above the data prime. So a model of depth ``d`` needs ``d`` middle
(40-bit) primes between the 60-bit data prime and the 60-bit special prime (at least 2):

- depth 1 (logistic regression): N = 8192, primes [60, 40, 40, 60] (200 bits, 128-bit security);
- depth 3 (one hidden layer with x^2): N = 16384, primes [60, 40, 40, 40, 60] (240 bits > 218, the
  128-bit bound at N = 8192).

Scale 2^40: a value ``v`` is held as ``v * 2^40``, so plaintext weights of magnitude below
``2^-40`` would encode as the zero polynomial; see :data:`MIN_WEIGHT`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from din_lab.errors import ConfigError, CryptoError

__all__ = ["HEDepthError", "HEError", "HEParameterError", "HEParams", "SecretKeyError", "params_for_depth"]

# 128-bit security bounds on the total coefficient modulus (HomomorphicEncryption.org standard)
MAX_MODULUS_BITS = {4096: 109, 8192: 218, 16384: 438, 32768: 881}


class HEError(CryptoError):
    """Base of every encrypted-evaluation error."""


class SecretKeyError(HEError):
    """A context offered for publishing (or loaded as public) carries the secret key."""


class HEParameterError(HEError):
    """A context or ciphertext does not have the parameters recorded for it."""


class HEDepthError(HEError):
    """A model needs more multiplicative levels than the context has (detected before evaluating)."""


@dataclass(frozen=True, kw_only=True)
class HEParams:
    """CKKS parameters: ring degree, coefficient-modulus prime sizes (special prime last), scale."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 40, 60)
    scale_bits: int = 40

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(int(b) for b in self.coeff_mod_bit_sizes))
        if self.poly_modulus_degree not in MAX_MODULUS_BITS:
            raise ConfigError(f"poly_modulus_degree must be one of {sorted(MAX_MODULUS_BITS)}, "
                              f"got {self.poly_modulus_degree!r}")
        if len(self.coeff_mod_bit_sizes) < 3:
            raise ConfigError("coeff_mod_bit_sizes needs at least 3 primes (data, one level, special)")
        if sum(self.coeff_mod_bit_sizes) > MAX_MODULUS_BITS[self.poly_modulus_degree]:
            raise ConfigError(f"{sum(self.coeff_mod_bit_sizes)} modulus bits exceed the 128-bit security bound "
                              f"{MAX_MODULUS_BITS[self.poly_modulus_degree]} at N = {self.poly_modulus_degree}")
        if not 20 <= self.scale_bits < self.coeff_mod_bit_sizes[0]:
            raise ConfigError(f"scale_bits must be in [20, {self.coeff_mod_bit_sizes[0]}), got {self.scale_bits}")

    @property
    def max_depth(self) -> int:
        """The deepest model these parameters evaluate: one middle prime per multiplicative level
        (``d - 1`` rescales, and one prime of headroom for the unrescaled last layer)."""
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def slots(self) -> int:
        """Samples per ciphertext in the batched layout: N / 2."""
        return self.poly_modulus_degree // 2

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> HEParams:
        try:
            data = json.loads(text)
            return cls(poly_modulus_degree=int(data["poly_modulus_degree"]),
                       coeff_mod_bit_sizes=tuple(data["coeff_mod_bit_sizes"]), scale_bits=int(data["scale_bits"]))
        except (ValueError, KeyError, TypeError) as e:
            raise HEParameterError(f"malformed HE parameters: {e}") from e


def params_for_depth(depth: int) -> HEParams:
    """The smallest standard parameters that evaluate a model of multiplicative ``depth``."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"a model's depth is a positive integer, got {depth!r}")
    middle = max(depth, 2)
    bits = 60 + 40 * middle + 60
    for degree in (8192, 16384):
        if bits <= MAX_MODULUS_BITS[degree]:
            return HEParams(poly_modulus_degree=degree, coeff_mod_bit_sizes=(60,) + (40,) * middle + (60,))
    raise HEDepthError(f"depth {depth} needs N = 32768 or bootstrapping; the lab's HE models have depth 1 or 3")
