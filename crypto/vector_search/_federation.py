"""Fan one encrypted query out to several parties and merge their answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from privaudit.crypto.vector_search._roles import (
    EncryptedScores,
    Hit,
    Querier,
    ShardScores,
)
from privaudit.errors import ParameterError

__all__ = ["FederatedSearch", "PartyEndpoint"]


class PartyEndpoint(Protocol):
    """What the federation needs from a party: an in-process :class:`DataParty`, or an
    HTTP client with the same two methods (``privaudit.api.vector_client.VectorParty``):
    bytes in, the answer as an object or its bytes out."""

    party_id: str

    def register_context(self, context: bytes) -> str: ...

    def search(
        self, query: Any, *, querier_id: str, context: bytes | None = None
    ) -> EncryptedScores | bytes: ...


class FederatedSearch:
    """One querier, several parties: encrypt once, score everywhere, merge the top-k.

    Parameters
    ----------
    querier
        The :class:`Querier` that owns the key.
    parties
        The parties to query (in-process :class:`DataParty` objects or clients).
    querier_id
        How the parties know this querier (their query budgets count per id).

    Notes
    -----
    The public context is sent to each party once, on the first search; later queries
    refer to it by its SHA-256. Every query travels as bytes and every answer is
    serialized and parsed, exactly as over a network, so ``bytes_sent_`` and
    ``bytes_received_`` are what a network would carry.

    Examples
    --------
    See docs/vector_search.md.
    """

    def __init__(
        self, *, querier: Querier, parties: Sequence[PartyEndpoint], querier_id: str
    ) -> None:
        if not isinstance(querier, Querier):
            raise ParameterError("querier must be a Querier")
        if not parties:
            raise ParameterError("give at least one party")
        names = [party.party_id for party in parties]
        if len(set(names)) != len(names):
            raise ParameterError(f"party ids must be unique; got {names}")
        self.querier, self.parties, self.querier_id = querier, list(parties), querier_id
        self._registered: set[str] = set()
        self.bytes_sent_ = 0
        self.bytes_received_ = 0
        self.answers_: list[ShardScores] = []

    def search(self, vector: Any, *, k: int = 10) -> list[Hit]:
        """The global top-``k`` over all parties for one query vector."""
        query = self.querier.encrypt_query(vector).to_bytes()
        context = self.querier.public_context()
        answers = []
        for party in self.parties:
            first = party.party_id not in self._registered
            if first:
                party.register_context(context)
                self._registered.add(party.party_id)
                self.bytes_sent_ += len(context)
            self.bytes_sent_ += len(query)
            answer = party.search(query, querier_id=self.querier_id)
            blob = answer.to_bytes() if isinstance(answer, EncryptedScores) else answer
            self.bytes_received_ += len(blob)
            # Hits name the party that was asked, not what its answer claims to be.
            answers.append(replace(self.querier.decrypt_scores(blob), party_id=party.party_id))
        self.answers_ = answers
        return self.querier.top_k(answers, k)
