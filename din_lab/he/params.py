"""CKKS parameters per model depth (:class:`HEParams`), and the errors of encrypted evaluation.

A model's multiplicative depth is what its evaluation consumes: one level per linear layer (a
plaintext-weight multiply) and one per square activation (a ciphertext product). Every layer but
the last is rescaled, which drops one middle (40-bit) prime; the last linear layer is not
(:mod:`din_lab.he.evaluation`), so its products, at scale ``2^(scale_bits + weight_scale_bits)``,
must fit in what is left of the modulus, with :attr:`HEParams.output_bits` to spare for the
outputs' magnitude. The special prime (last) is only for key switching.

- depth 1 (logistic regression): N = 4096, primes [60, 49] (109 bits, the 128-bit bound at
  N = 4096). One data prime holds the single unrescaled product: the inputs are held at scale
  2^31 and the plaintext weights at 2^18, so products sit at 2^49 and outputs below 2^10 = 1,024
  in magnitude decrypt correctly. A quarter of the ring and a third of the primes of
  N = 8192 / [60, 40, 40, 60]: each multiply is about six times cheaper, and the public context
  about 0.25 MB.
- depth 2: N = 8192, primes [60, 40, 40, 60], scale 2^40 for inputs and weights.
- depth 3 (one hidden layer with x^2): N = 16384, primes [60, 40, 40, 40, 60] (240 bits > 218, the
  128-bit bound at N = 8192).

TenSEAL encodes a plaintext multiplier at the scale of the ciphertext it multiplies. To hold
weights at a smaller scale than the inputs, the owner encrypts ``x * 2^(scale_bits -
weight_scale_bits)`` at scale ``2^weight_scale_bits`` (:attr:`HEParams.value_scale`): the same
coefficients, so the same precision, as ``x`` at ``2^scale_bits``, and every output comes out
multiplied by that factor, which decryption divides away. This only works without rescaling, so
parameters with ``weight_scale_bits < scale_bits`` have no middle prime.

Precision: weights are rounded to multiples of ``2^-weight_scale_bits``, so a logit moves by at
most ``2^-(weight_scale_bits + 1) * sum |x|`` (about 1e-4 for the lab's standardized digits; the
encryption noise adds about 2e-6 per unit of a column's ``sum |w|`` at N = 4096, scale 2^31). Weights below :attr:`HEParams.min_weight`
would encode as zero; see :mod:`din_lab.he.evaluation`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from din_lab.errors import ConfigError, CryptoError

__all__ = ["HEDepthError", "HEError", "HEParameterError", "HEParams", "SecretKeyError", "params_for_depth"]

# 128-bit security bounds on the total coefficient modulus (HomomorphicEncryption.org standard)
MAX_MODULUS_BITS = {4096: 109, 8192: 218, 16384: 438, 32768: 881}
# bits above the last layer's products kept for the outputs' magnitude: they decrypt correctly
# below 2^(OUTPUT_BITS - 1) = 512 at least (1,024 with the depth-1 parameters)
OUTPUT_BITS = 10


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
    """CKKS parameters: ring degree, coefficient-modulus prime sizes (special prime last), the
    inputs' scale and the plaintext weights' scale (``weight_scale_bits``; the inputs' when omitted)."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 40, 60)
    scale_bits: int = 40
    weight_scale_bits: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(int(b) for b in self.coeff_mod_bit_sizes))
        if self.weight_scale_bits is None:
            object.__setattr__(self, "weight_scale_bits", self.scale_bits)
        if self.poly_modulus_degree not in MAX_MODULUS_BITS:
            raise ConfigError(f"poly_modulus_degree must be one of {sorted(MAX_MODULUS_BITS)}, "
                              f"got {self.poly_modulus_degree!r}")
        if len(self.coeff_mod_bit_sizes) < 2:
            raise ConfigError("coeff_mod_bit_sizes needs at least 2 primes (data, special)")
        if sum(self.coeff_mod_bit_sizes) > MAX_MODULUS_BITS[self.poly_modulus_degree]:
            raise ConfigError(f"{sum(self.coeff_mod_bit_sizes)} modulus bits exceed the 128-bit security bound "
                              f"{MAX_MODULUS_BITS[self.poly_modulus_degree]} at N = {self.poly_modulus_degree}")
        if not 20 <= self.scale_bits < self.coeff_mod_bit_sizes[0]:
            raise ConfigError(f"scale_bits must be in [20, {self.coeff_mod_bit_sizes[0]}), got {self.scale_bits}")
        if not 16 <= self.weight_scale_bits <= self.scale_bits:
            raise ConfigError(f"weight_scale_bits must be in [16, scale_bits = {self.scale_bits}], "
                              f"got {self.weight_scale_bits}")
        if self.weight_scale_bits != self.scale_bits and len(self.coeff_mod_bit_sizes) != 2:
            raise ConfigError("weights at a smaller scale than the inputs only work without rescaling: "
                              "such parameters have one data prime and the special prime")
        if self.max_depth < 1:
            raise ConfigError(f"primes {list(self.coeff_mod_bit_sizes)} cannot hold a product at scale "
                              f"2^{self.scale_bits + self.weight_scale_bits} with {OUTPUT_BITS} bits for the outputs")

    def _spare_bits(self, depth: int) -> int:
        """Modulus bits left above the last layer's products after ``depth - 1`` rescales."""
        data = self.coeff_mod_bit_sizes[:-1]
        if depth - 1 > len(data) - 1:
            return -1
        return sum(data[:len(data) - (depth - 1)]) - self.scale_bits - self.weight_scale_bits

    @property
    def max_depth(self) -> int:
        """The deepest model these parameters evaluate: one middle prime per rescaled level, and the
        rest of the modulus holding the unrescaled last layer with :data:`OUTPUT_BITS` to spare."""
        depth = 0
        while self._spare_bits(depth + 1) >= OUTPUT_BITS:
            depth += 1
        return depth

    def output_bound(self, depth: int) -> float:
        """Outputs of a ``depth``-deep model decrypt correctly while their magnitude stays below this
        (beyond, CKKS wraps them around the modulus and they decrypt as noise)."""
        return 2.0 ** (self._spare_bits(depth) - 1)

    @property
    def value_scale(self) -> float:
        """The factor the owner multiplies its inputs by (and decryption divides every output by):
        ``2^(scale_bits - weight_scale_bits)``, 1 when weights and inputs share the scale."""
        return 2.0 ** (self.scale_bits - self.weight_scale_bits)

    @property
    def min_weight(self) -> float:
        """The smallest plaintext multiplier magnitude evaluated as it is: it encodes as a nonzero
        integer (2^-weight_scale_bits, or 2^-30 at larger weight scales)."""
        return 2.0 ** -min(self.weight_scale_bits, 30)

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
            weight = data.get("weight_scale_bits", data["scale_bits"])
            return cls(poly_modulus_degree=int(data["poly_modulus_degree"]),
                       coeff_mod_bit_sizes=tuple(data["coeff_mod_bit_sizes"]), scale_bits=int(data["scale_bits"]),
                       weight_scale_bits=int(weight))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise HEParameterError(f"malformed HE parameters: {e}") from e


def params_for_depth(depth: int) -> HEParams:
    """The smallest standard parameters that evaluate a model of multiplicative ``depth``."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"a model's depth is a positive integer, got {depth!r}")
    if depth == 1:
        return HEParams(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 49), scale_bits=31, weight_scale_bits=18)
    middle = depth  # d - 1 rescales, and one more middle prime above the data prime for the last products
    bits = 60 + 40 * middle + 60
    for degree in (8192, 16384):
        if bits <= MAX_MODULUS_BITS[degree]:
            return HEParams(poly_modulus_degree=degree, coeff_mod_bit_sizes=(60,) + (40,) * middle + (60,))
    raise HEDepthError(f"depth {depth} needs N = 32768 or bootstrapping; the lab's HE models have depth 1 or 3")
