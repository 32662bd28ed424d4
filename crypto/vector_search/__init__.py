"""Encrypted federated vector search: FRAG's architecture with sound CKKS [Zha24]_.

A :class:`Querier` owns the CKKS secret key and sends parties only a public context
(parameters and three or four Galois keys) and fresh encryptions of its query. Each
:class:`DataParty` scores the encrypted query against its plaintext shard with a packed
baby-step/giant-step diagonal kernel over pre-encoded plaintexts and returns encrypted
scores it cannot read. :class:`FederatedSearch` fans a query out and merges the global
top-k. Leakage (the querier sees every score of every shard it queries), optional
:class:`ScoreNoise` and query budgets: docs/vector_search.md.

References
----------
.. [Zha24] D. Zhao, "FRAG: Toward Federated Vector Database Management for
   Collaborative and Secure Retrieval-Augmented Generation", arXiv:2410.13272, 2024.
"""

from privaudit.crypto.vector_search._federation import FederatedSearch, PartyEndpoint
from privaudit.crypto.vector_search._kernel import (
    bsgs_steps,
    chunk_capacity,
    fold_window,
    galois_elements,
    shard_memory_bytes,
)
from privaudit.crypto.vector_search._noise import ScoreNoise
from privaudit.crypto.vector_search._parameters import SearchParameters
from privaudit.crypto.vector_search._roles import (
    MAX_CONTEXT_BYTES,
    MAX_QUERY_BYTES,
    ContextInfo,
    DataParty,
    EncryptedQuery,
    EncryptedScores,
    Hit,
    Querier,
    ShardScores,
    check_context,
    check_vectors,
    merge_top_k,
)
from privaudit.crypto.vector_search._tenseal_mm import chunk_columns, matmul_chunked

__all__ = [
    "MAX_CONTEXT_BYTES",
    "MAX_QUERY_BYTES",
    "ContextInfo",
    "DataParty",
    "EncryptedQuery",
    "EncryptedScores",
    "FederatedSearch",
    "Hit",
    "PartyEndpoint",
    "Querier",
    "ScoreNoise",
    "SearchParameters",
    "ShardScores",
    "bsgs_steps",
    "check_context",
    "check_vectors",
    "chunk_capacity",
    "chunk_columns",
    "fold_window",
    "galois_elements",
    "matmul_chunked",
    "merge_top_k",
    "shard_memory_bytes",
]
