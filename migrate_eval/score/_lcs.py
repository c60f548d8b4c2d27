"""Length of the longest common subsequence of two token sequences, bit-parallel.

ROUGE-L needs only the LCS length. ``rouge-score`` fills the full ``len(a) x len(b)`` table in
Python (about 0.1 s for two AlpacaEval-length answers); here each token of ``b`` updates one
Python integer holding a bit per position of ``a`` (the bit-vector LCS recurrence of Allison and
Dix, 1986, in the form of Crochemore et al., 2001):

    V' = (V + (V & M[t])) | (V & ~M[t])

where ``M[t]`` has bit ``i`` set when ``a[i] == t`` and ``V`` starts with all ``len(a)`` bits set;
the LCS length is the number of zero bits of the final ``V``. That is ``len(b)`` big-integer
additions of ``len(a)`` bits: about 50 times faster on answers of a few hundred words, same result
(tests/metrics/test_lcs.py checks it against ``rouge-score``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence of ``a`` and ``b``."""
    if len(a) < len(b):  # fewer, shorter integers: bits for the longer sequence, loop the shorter
        a, b = b, a
    if not b:
        return 0
    masks: dict[Hashable, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        m = masks.get(token)
        if m is None:
            continue  # no match: V & M = 0, so V' = V | V = V
        u = v & m
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()
