"""Which shard owns a key: Scylla's token-to-shard arithmetic.

The owner of a token is computed exactly as Scylla's sharder does with
``ignore_msb = 12``: bias the token to unsigned, drop the 12 high bits, and
scale into [0, N).  Neighbouring tokens therefore spread round-robin over
the shards.  Pure arithmetic; never touches storage or the rings.
"""

from shardserver.shard.values import token_of

IGNORE_MSB = 12
_KEPT_BITS = 64 - IGNORE_MSB
_KEPT_MASK = (1 << _KEPT_BITS) - 1


def shard_of_token(token: int, nshards: int) -> int:
    """Scylla's (((unsigned << 12) mod 2**64) * nshards) >> 64, in fewer big-integer steps: the
    bits kept are the low 52 of the unsigned token, which are the signed token's (the bias is
    2**63), and shifting them up by 12 before dividing by 2**64 is dividing by 2**52."""
    if nshards == 1:
        return 0        # what the arithmetic gives: the one shard owns every token
    return ((token & _KEPT_MASK) * nshards) >> _KEPT_BITS


def shard_of_key(pk: dict, nshards: int) -> tuple[int, int]:
    """(owner shard, token) of a partition-key AttributeValue."""
    token = token_of(pk)
    return shard_of_token(token, nshards), token


def segment_bounds(segment: int, total_segments: int) -> tuple[int, int]:
    """Parallel-scan segment as a half-open range of unsigned (biased) tokens."""
    span = 1 << 64
    return segment * span // total_segments, (segment + 1) * span // total_segments
