"""Spend limits enforced before a request is sent (README "Budgets").

Every request holds a reservation of its worst case while it is in flight: its prompt's estimated tokens
plus its output limit, priced at the provider's dearest input price and its output price (batch discount
applied). When the answer arrives the reservation is released and the actual cost (from the answer's
usage, ``providers.costs``) is counted instead. Spent plus reserved never exceeds a limit, so neither does
the spend, as long as no answer costs more than its reservation; a prompt whose tokens turn out to be more
than the estimate raises the estimate of every later reservation by that ratio (:attr:`Budget.input_factor`).

A request that does not fit while other online requests are in flight waits for them to end (their
reservations shrink to their actual cost, which may make room); one that does not fit with none in flight
is not sent, and the limit is then *closed*: no later request that counts against it is sent (calls in
flight finish and are stored). So a run stops within one request's worst case of its limit, never above it.
A provider batch holds its requests' worst case until the batch ends; a request refused while such holds
are outstanding is not sent, but the limit stays open for what fits once the batches are collected.

Everything here runs on the event loop's thread between awaits: a reservation is a few additions and
comparisons, with no lock (asyncio interleaves coroutines only at awaits); only a request that does not fit
awaits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from providers.config import Price
from providers.result import CallResult

TIMED_OUT = "timeout"  # providers.errors.TimedOut.error_type

_NOTHING = 1e-9  # what is left reserved once every hold is released (float sums leave crumbs)


@dataclass(slots=True)
class Limit:
    """One limit: ``name`` as the config spells it (``budget.usd``), in USD or tokens (``unit``)."""

    name: str
    limit: float
    unit: str = "usd"
    spent_before: float = 0.0  # by earlier runs of the batch (from the store)
    spent: float = 0.0  # by this run
    reserved: float = 0.0  # by this run's requests in flight
    refusals: int = 0  # requests not sent because they did not fit
    refused_worst: float = 0.0  # the largest worst case refused: the run stopped within it of the limit
    closed: bool = False  # a request did not fit with nothing reserved: no more are sent

    def fits(self, amount: float) -> bool:
        """Whether ``amount`` more could be spent without going over (and the limit is not closed)."""
        return not self.closed and self.spent_before + self.spent + self.reserved + amount <= self.limit

    @property
    def reached(self) -> bool:
        """Whether a request was not sent because of this limit."""
        return self.refusals > 0

    @property
    def total_spent(self) -> float:
        """Spent by earlier runs and this one."""
        return self.spent_before + self.spent

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the limit, what was spent (before and in this run) and whether it was reached."""
        digits = 6 if self.unit == "usd" else 0
        return {
            "limit": self.limit,
            "unit": self.unit,
            "spent": round(self.total_spent, digits),
            "spent_before_this_run": round(self.spent_before, digits),
            "spent_this_run": round(self.spent, digits),
            "reached": self.reached,
            "requests_refused": self.refusals,
            "largest_refused_worst_case": round(self.refused_worst, digits),
        }


@dataclass(frozen=True, slots=True)
class Hold:
    """A request's reservation: what it holds of each of its account's limits, and the prompt tokens assumed."""

    usd: float
    tokens: float
    prompt_tokens: float
    online: bool = True  # an online request in flight (not a request waiting in a provider batch)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request that does not fit: the limits it would cross and its worst case in USD and tokens."""

    limits: list[Limit]
    usd: float
    tokens: float


@dataclass(slots=True)
class Account:
    """One provider's way into the budget: the limits its requests count against, and its worst-case price."""

    budget: Budget
    usd_limits: tuple[Limit, ...]
    token_limits: tuple[Limit, ...]
    worst_price: Price | None

    def try_reserve(self, prompt_tokens: float, output_tokens: float, online: bool = True) -> Hold | Refusal:
        """Reserve a request's worst case: its hold, or the limits it does not fit (nothing reserved then)."""
        prompt = prompt_tokens * self.budget.input_factor
        usd = 0.0
        if self.usd_limits:
            price = self.worst_price
            assert price is not None  # a USD limit on a provider without a price is refused at validate
            usd = (prompt * price.input_per_million + output_tokens * price.output_per_million) / 1_000_000
        tokens = prompt + output_tokens
        refused = [lim for lim in self.usd_limits if not lim.fits(usd)]
        refused += [lim for lim in self.token_limits if not lim.fits(tokens)]
        if refused:
            return Refusal(refused, usd, tokens)
        return self._hold(usd, tokens, prompt_tokens, online)

    def _hold(self, usd: float, tokens: float, prompt_tokens: float, online: bool) -> Hold:
        for lim in self.usd_limits:
            lim.reserved += usd
        for lim in self.token_limits:
            lim.reserved += tokens
        if online:
            self.budget.in_flight += 1
        return Hold(usd, tokens, prompt_tokens, online)

    def hold_anyway(self, prompt_tokens: float, output_tokens: float) -> Hold:
        """Hold a request's worst case even over the limit (a request an earlier run sent in a batch: it will
        be paid); the limits it crosses are closed."""
        found = self.try_reserve(prompt_tokens, output_tokens, online=False)
        if isinstance(found, Hold):
            return found
        for lim in found.limits:
            lim.closed = True
        return self._hold(found.usd, found.tokens, prompt_tokens, online=False)

    def refuse(self, refusal: Refusal) -> None:
        """A request is not sent because of ``refusal``: counted; a limit with nothing reserved is closed."""
        for lim in refusal.limits:
            lim.refusals += 1
            lim.refused_worst = max(lim.refused_worst, refusal.usd if lim.unit == "usd" else refusal.tokens)
            if lim.reserved <= _NOTHING:
                lim.closed = True

    async def reserve(self, prompt_tokens: float, output_tokens: float) -> Hold | None:
        """An online request's reservation, waiting while online requests in flight may make room; None: it
        must not be sent."""
        while True:
            found = self.try_reserve(prompt_tokens, output_tokens)
            if isinstance(found, Hold):
                return found
            if self.budget.in_flight == 0 or any(lim.closed for lim in found.limits):
                self.refuse(found)
                return None
            await self.budget.settled()

    def settle(self, hold: Hold, result: CallResult | None) -> None:
        """Release ``hold`` and count what the request actually cost: nothing for a request that got no answer,
        except one that timed out, counted at its worst case (the provider may have worked on it, and bill it,
        after we stopped waiting: the run's limits must hold even then)."""
        cost = (result.cost_usd or 0.0) if result is not None else 0.0
        used = 0.0
        if result is not None and result.error_type == TIMED_OUT:
            cost, used = hold.usd, hold.tokens
        if result is not None and result.ok:
            used = float((result.input_tokens or 0) + (result.output_tokens or 0))
            if result.input_tokens and hold.prompt_tokens > 0:
                ratio = result.input_tokens / hold.prompt_tokens
                if ratio > self.budget.input_factor:
                    self.budget.input_factor = ratio
        for lim in self.usd_limits:
            lim.reserved = max(0.0, lim.reserved - hold.usd)
            lim.spent += cost
        for lim in self.token_limits:
            lim.reserved = max(0.0, lim.reserved - hold.tokens)
            lim.spent += used
        if hold.online:
            self.budget.in_flight -= 1
        self.budget.wake()

    @property
    def stopped(self) -> bool:
        """Whether a limit of this account is closed: none of its requests may be sent any more."""
        return any(lim.closed for lim in (*self.usd_limits, *self.token_limits))

    def reason(self) -> str:
        """Why a request is not sent: the limits reached, with what was spent of them."""
        return "; ".join(describe(lim) for lim in (*self.usd_limits, *self.token_limits) if lim.reached)


def describe(lim: Limit) -> str:
    """``budget.usd reached: $24.93 spent of $25.00`` (tokens: ``1,204,000 of 1,250,000 tokens``)."""
    if lim.unit == "usd":
        return f"{lim.name} reached: ${lim.total_spent:.2f} spent of ${lim.limit:.2f}"
    return f"{lim.name} reached: {lim.total_spent:,.0f} of {lim.limit:,.0f} tokens spent"


@dataclass(slots=True)
class Budget:
    """The run's limits and the accounts of its providers and judges (built by ``flows.budget``)."""

    limits: list[Limit] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)
    input_factor: float = 1.0
    """Actual prompt tokens over estimated ones, at most, seen so far (at least 1): scales later reservations."""
    in_flight: int = 0
    """Online requests holding a reservation."""
    _waiters: int = 0
    _settle_event: asyncio.Event | None = None

    async def settled(self) -> None:
        """Wait until some reservation is settled."""
        if self._settle_event is None:
            self._settle_event = asyncio.Event()
        event = self._settle_event
        self._waiters += 1
        try:
            await event.wait()
        finally:
            self._waiters -= 1

    def wake(self) -> None:
        """Wake the requests waiting for room (only when there are any: the common case costs one comparison)."""
        if self._waiters and self._settle_event is not None:
            self._settle_event.set()
            self._settle_event = None

    def add_account(
        self, source_id: str, usd_limits: Iterable[Limit], token_limits: Iterable[Limit], worst_price: Price | None
    ) -> Account:
        """Register the account of ``source_id`` (a provider's, or one of a judge's ``<judge>:<purpose>``)."""
        account = Account(self, tuple(usd_limits), tuple(token_limits), worst_price)
        self.accounts[source_id] = account
        return account

    def account(self, source_id: str) -> Account | None:
        """The account of ``source_id`` (None: its requests count against no limit); a judge's calls
        (``<judge>:<purpose>``) count against their judge's account."""
        found = self.accounts.get(source_id)
        if found is None and ":" in source_id:
            found = self.accounts.get(source_id.rsplit(":", 1)[0])
        return found

    @property
    def reached(self) -> list[Limit]:
        """The limits reached in this run."""
        return [lim for lim in self.limits if lim.reached]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: each limit by name, and whether any was reached."""
        return {
            "reached": bool(self.reached),
            "limits": {lim.name: lim.to_dict() for lim in self.limits},
            "message": "; ".join(describe(lim) for lim in self.reached) or None,
        }
