"""Budgets (README "Budgets"): limits enforced before each request is sent, the shipped price table, the cost
recorded with every answer, and the spend of earlier runs counted from the store."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import provider_entry, write_config, write_prompts

from common.errors import InputError
from flows.config import load_config
from flows.generation.generate import generate_tasks
from providers import store as store_module
from providers.budget import Budget, Hold, Limit
from providers.config import Price, ProviderConfig
from providers.prices import price_table
from providers.result import CallResult
from providers.store import ResponseStore
from simulator import RunningSimulator

RLHF = str(Path(sys.executable).with_name("rlhf"))
JUDGE_PRICE = {"input_per_million": 2.5, "output_per_million": 10.0}


# ------------------------------------------------------------------------------------------- price table


def test_the_price_table_records_its_date_and_sources_and_prices_dated_snapshots() -> None:
    table = price_table()
    assert table.as_of <= date.today() and set(table.sources) == {"openai", "anthropic"}
    assert all(url.startswith("https://") for url in table.sources.values())
    gpt = ProviderConfig(source_id="a", kind="openai", model="gpt-4o-2024-08-06")
    assert gpt.price_source == f"table {table.as_of.isoformat()}"
    assert gpt.full_price == Price(
        input_per_million=2.5, output_per_million=10.0, cached_input_per_million=1.25, cache_write_per_million=2.5
    )
    claude = ProviderConfig(source_id="c", kind="anthropic", model="claude-sonnet-4-5-20250929", mode="batch")
    assert claude.effective_price is not None and claude.effective_price.output_per_million == 7.5
    assert claude.worst_price == Price(input_per_million=3.75 / 2, output_per_million=7.5)  # a cache write, halved
    own = ProviderConfig(
        source_id="o", kind="openai", model="gpt-4o", price={"input_per_million": 1.0, "output_per_million": 2.0}
    )
    assert own.price_source == "config" and own.known_price == Price(input_per_million=1.0, output_per_million=2.0)
    assert ProviderConfig(source_id="x", kind="openai", model="llama-3-8b").known_price is None


def test_a_table_older_than_90_days_is_reported() -> None:
    table = price_table()
    assert table.stale_warning(table.as_of + timedelta(days=90)) is None
    warning = table.stale_warning(table.as_of + timedelta(days=91))
    assert warning is not None and "91 days old" in warning and table.sources["openai"] in warning


# ------------------------------------------------------------------------------------------- validate


def _config_text(tmp_path: Path, budget: str, judge_model: str = "judge-model") -> Path:
    write_prompts(tmp_path / "p.jsonl", 2)
    path = tmp_path / "run.yaml"
    path.write_text(
        f"""project: x
batch: b
prompts: {{path: p.jsonl}}
providers:
  - source_id: gpt
    kind: openai
    model: gpt-4o
    params: {{max_tokens: 100}}
  - source_id: local
    kind: openai
    model: llama-3-8b
    base_url: http://127.0.0.1:9/v1
    params: {{max_tokens: 100}}
judges:
  - source_id: judge
    kind: openai
    model: {judge_model}
    base_url: http://127.0.0.1:9/v1
    params: {{max_tokens: 100}}
{budget}
""",
        encoding="utf-8",
    )
    return path


def test_a_usd_budget_refuses_a_model_without_a_price_at_validate(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_config(_config_text(tmp_path, "budget: {usd: 25.0}"), require_keys=False)
    text = caught.value.render()
    assert f"{tmp_path / 'run.yaml'}:9: providers[1].price: no price known for openai model 'llama-3-8b'" in text
    assert "judges[0].price: no price known for openai model 'judge-model'" in text
    assert "gpt" not in text.split("providers[1]")[0]  # gpt-4o is in the price table


def test_limits_that_need_no_price_and_unknown_names(tmp_path: Path) -> None:
    # a token limit and a per-provider limit on a priced provider need no other price
    config = load_config(_config_text(tmp_path, "budget: {tokens: 100000, providers: {gpt: 1.0}}"), require_keys=False)
    assert config.budget is not None and config.budget.tokens == 100000
    with pytest.raises(InputError) as caught:
        load_config(_config_text(tmp_path, "budget: {providers: {gtp: 1.0}}"), require_keys=False)
    assert "budget.providers.gtp: 'gtp' is no provider or judge of this run" in caught.value.render()
    with pytest.raises(InputError) as caught:
        load_config(_config_text(tmp_path, "budget: {}"), require_keys=False)
    assert "give at least one limit" in caught.value.render()
    # an OpenAI request without max_tokens has no worst case: a budget cannot bound it
    path = _config_text(tmp_path, "budget: {usd: 5.0}", "gpt-4o-mini")
    path.write_text(
        path.read_text(encoding="utf-8").replace("    params: {max_tokens: 100}\n", "", 1), encoding="utf-8"
    )
    with pytest.raises(InputError) as caught:
        load_config(path, require_keys=False)
    assert "run.yaml:5: providers[0].params: no output limit, so a budget cannot bound" in caught.value.render()
    # the budget is no part of the config hash: raising it continues the same batch
    a = load_config(_config_text(tmp_path, "budget: {tokens: 100}"), require_keys=False)
    b = load_config(_config_text(tmp_path, "budget: {tokens: 200}"), require_keys=False)
    assert a.config_hash() == b.config_hash()


def test_plan_counts_the_judges_calls_tokens_and_cost_and_each_shares_of_the_budget(tmp_path: Path) -> None:
    from flows.reporting.plan import plan_budget_text, plan_run

    write_prompts(tmp_path / "p.jsonl", 10)
    path = tmp_path / "run.yaml"
    path.write_text(
        """project: x
batch: b
prompts: {path: p.jsonl}
providers:
  - {source_id: gpt, kind: openai, model: gpt-4o, params: {max_tokens: 100}}
  - {source_id: claude, kind: anthropic, model: claude-sonnet-4-5, params: {max_tokens: 100}}
judges:
  - source_id: judge
    kind: openai
    model: gpt-4o-mini
    params: {max_tokens: 200}
budget: {usd: 2.0, expected_output_tokens: {gpt: 50, judge: 80}}
""",
        encoding="utf-8",
    )
    plan = plan_run(path)
    judge = plan["judges"]["judge"]
    assert judge["calls"] == 10 * (2 + 2)  # a rating per answer, the preference asked in both orders
    assert judge["output_tokens_expected"] == 40 * 80 and judge["output_tokens_worst"] == 40 * 200
    assert 0 < judge["input_tokens_expected"] < judge["input_tokens_worst"]  # the answers quoted at 50/25 vs 100
    assert 0 < judge["cost_usd_expected"] < judge["cost_usd_worst"]
    gpt, claude = plan["providers"]["gpt"], plan["providers"]["claude"]
    assert gpt["expected_output_from"] == "budget.expected_output_tokens"
    assert claude["expected_output_from"] == "a quarter of the output limit"
    total = gpt["cost_usd_expected"] + claude["cost_usd_expected"] + judge["cost_usd_expected"]
    assert plan["cost_usd_expected"] == pytest.approx(total, abs=1e-3)
    assert judge["budget_share"]["worst"] == pytest.approx(judge["cost_usd_worst"] / 2.0, abs=1e-4)
    text = plan_budget_text(plan)
    assert "of the budget of $2.00" in text and f"judge {price_table().source}" in text


# ------------------------------------------------------------------------------------------- the ledger


def test_a_request_that_does_not_fit_waits_for_those_in_flight_and_the_limit_closes_only_when_none_is() -> None:
    async def scenario() -> None:
        limit = Limit("budget.usd", 1.0)
        budget = Budget([limit])
        account = budget.add_account("a", [limit], [], Price(input_per_million=0.0, output_per_million=1_000_000.0))
        first = await account.reserve(0, 0.4)  # $0.40 worst case each
        second = await account.reserve(0, 0.4)
        assert isinstance(first, Hold) and isinstance(second, Hold) and limit.reserved == pytest.approx(0.8)
        third = asyncio.create_task(account.reserve(0, 0.4))
        await asyncio.sleep(0)
        assert not third.done()  # waits: the two in flight may cost less than their worst case
        account.settle(first, CallResult(ok=True, input_tokens=0, output_tokens=0, cost_usd=0.1))
        held = await third
        assert isinstance(held, Hold) and limit.spent == pytest.approx(0.1)
        account.settle(second, CallResult(ok=True, cost_usd=0.4))
        account.settle(held, CallResult(ok=True, cost_usd=0.4))
        assert await account.reserve(0, 0.4) is None  # $0.90 spent, nothing in flight: closed
        assert limit.closed and account.stopped and limit.refused_worst == pytest.approx(0.4)
        assert limit.total_spent == pytest.approx(0.9) and limit.reserved == 0.0
        assert await account.reserve(0, 0.01) is None  # closed: even a small one is not sent

    asyncio.run(scenario())


def test_a_request_that_timed_out_counts_its_worst_case_an_error_before_sending_nothing() -> None:
    async def scenario() -> None:
        limit = Limit("budget.usd", 1.0)
        account = Budget([limit]).add_account("a", [limit], [], Price(input_per_million=0.0, output_per_million=1e6))
        timed_out = await account.reserve(0, 0.4)
        refused = await account.reserve(0, 0.4)
        assert isinstance(timed_out, Hold) and isinstance(refused, Hold)
        account.settle(timed_out, CallResult(ok=False, error_type="timeout", error="timed out after 60 s"))
        account.settle(refused, CallResult(ok=False, error_type="http_400", status_code=400))
        assert limit.spent == pytest.approx(0.4) and limit.reserved == 0.0  # the timeout may be billed
        third = await account.reserve(0, 0.4)
        assert isinstance(third, Hold)
        account.settle(third, CallResult(ok=False, error_type="timeout", error="timed out after 60 s"))
        assert limit.spent == pytest.approx(0.8) and await account.reserve(0, 0.4) is None

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------- the store


def _v3_store(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store as the code before costs were recorded left it (schema 3), with an answer in it."""
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:3])
        patch.setattr(store_module, "SCHEMA_VERSION", 3)
        with ResponseStore(path) as store:
            store.execute(
                "INSERT INTO responses (fingerprint, source_id, prompt_id, ok, text, input_tokens, output_tokens)"
                " VALUES ('old', 'gpt', 'p1', 1, 'old answer', 1000, 2000)"
            )


def test_the_store_records_each_answers_cost_and_price_and_reads_older_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sqlite"
    _v3_store(path, monkeypatch)
    assert store_module.SCHEMA_VERSION == 4
    with ResponseStore(path, read_only=True) as reader:  # read as it is
        old = reader.get_many(["old"])["old"]
        assert old.text == "old answer" and old.cost_usd is None and old.price is None
    with ResponseStore(path) as store:  # migrated
        assert store.schema_version == 4
        store.put("new", "gpt", "p2", CallResult(ok=True, text="t", cost_usd=0.0125, price='{"source":"config"}'))
        found = store.get_many(["old", "new"])
        assert found["old"].cost_usd is None and found["new"].cost_usd == 0.0125
        assert found["new"].price == '{"source":"config"}'
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 4
    db.close()


def test_spend_in_the_store_counts_recorded_costs_and_prices_older_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.budget import spent_in_store

    path = tmp_path / "s.sqlite"
    _v3_store(path, monkeypatch)
    config = load_config(_config_text(tmp_path, "budget: {tokens: 1000000}"), require_keys=False)
    with ResponseStore(path) as store:
        store.put("new", "gpt", "p2", CallResult(ok=True, input_tokens=10, output_tokens=10, cost_usd=0.5))
        store.put("j", "judge:rating", "p2", CallResult(ok=True, input_tokens=1, output_tokens=1, cost_usd=0.25))
        store.put("e", "gpt", "p3", CallResult(ok=False, error_type="http_500"))
        spent = spent_in_store(config, store)
    # the old answer at gpt-4o's table price: 1000 × $2.5 + 2000 × $10 per million
    assert spent["gpt"] == (pytest.approx(0.5 + 0.0225), 3020)
    assert spent["judge"] == (pytest.approx(0.25), 2)


@pytest.mark.slow
def test_the_postgresql_store_records_costs_and_reads_a_schema_3_store(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pg_server import PASSWORD_ENV

    from providers import pg_store
    from providers.pg_store import PgResponseStore

    def open_store(url: str, read_only: bool = False) -> PgResponseStore:
        return PgResponseStore(url, read_only=read_only, password_env=PASSWORD_ENV)

    with monkeypatch.context() as patch:
        patch.setattr(pg_store, "MIGRATIONS", pg_store.MIGRATIONS[:3])
        patch.setattr(pg_store, "SCHEMA_VERSION", 3)
        with open_store(postgres_url) as store:
            store.execute(
                "INSERT INTO responses (fingerprint, source_id, prompt_id, ok, text, input_tokens, output_tokens)"
                " VALUES ('old', 'gpt', 'p1', 1, 'old answer', 1000, 2000)"
            )
    with open_store(postgres_url, read_only=True) as reader:
        assert reader.schema_version == 3
        old = reader.get_many(["old"])["old"]
        assert old.text == "old answer" and old.cost_usd is None
    with open_store(postgres_url) as store:
        assert store.schema_version == 4
        store.put("new", "gpt", "p2", CallResult(ok=True, text="t", cost_usd=0.0125, price='{"source":"table"}'))
        found = store.get_many(["old", "new"])
        assert found["old"].cost_usd is None and found["new"].cost_usd == 0.0125
        assert found["new"].price == '{"source":"table"}'


# ------------------------------------------------------------------------------------------- runs


def _store_spend(store_path: Path) -> tuple[float, int]:
    db = sqlite3.connect(store_path)
    try:
        total, rows = db.execute("SELECT SUM(COALESCE(cost_usd, 0)), COUNT(*) FROM responses").fetchone()
    finally:
        db.close()
    return float(total or 0.0), int(rows)


def _run(config: Path) -> dict[str, Any]:
    from flows.reporting.report import RunIncomplete

    try:
        return asyncio.run(generate_tasks(str(config)))
    except RunIncomplete as incomplete:  # BudgetReached is one
        assert incomplete.summary is not None
        return incomplete.summary


def _budget_config(sim: RunningSimulator, tmp_path: Path, usd: float, prompts: int = 240) -> Path:
    answers = {"max_tokens": 200}
    providers = [
        provider_entry(sim, "gpt", "openai", "gpt-4o", params=answers, max_concurrency=64),  # table price
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5", params=answers, max_concurrency=64),
        provider_entry(
            sim, "batch-mini", "openai", "gpt-4o-mini", params=answers, mode="batch", batch_poll_s=0.1
        ),  # table price, half in batch mode
    ]
    judges = [
        provider_entry(
            sim,
            "judge",
            "openai",
            "judge-gpt",
            params={"temperature": 0.0, "max_tokens": 300},
            price=JUDGE_PRICE,
            max_concurrency=64,
        )
    ]
    return write_config(
        tmp_path,
        providers,
        write_prompts(tmp_path / "p.jsonl", prompts),
        judges=judges,
        chunk_size=120,
        budget={"usd": usd},
    )


def _requests(sim: RunningSimulator) -> int:
    stats = sim.stats()
    return int(stats["requests_total"]) + sum(b["total"] for b in sim.batches())


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_a_budget_stops_the_run_within_one_requests_worst_case_of_its_limit_and_never_above(
    sim: RunningSimulator, tmp_path: Path, prefect_api: str
) -> None:
    sim.configure(latency_ms=60, batch_completion_s=0.3)
    limit = 1.2
    config = _budget_config(sim, tmp_path, limit)
    summary = _run(config)

    budget = summary["budget"]["limits"]["budget.usd"]
    store_usd, _ = _store_spend(tmp_path / "out" / "b1" / "responses.sqlite")
    assert summary["budget"]["reached"] and budget["reached"]
    assert budget["spent"] == pytest.approx(store_usd, abs=1e-6)  # the ledger is what the store holds
    assert store_usd <= limit  # never above
    assert 0 < budget["largest_refused_worst_case"] < 0.01
    assert limit - store_usd <= budget["largest_refused_worst_case"]  # within one request's worst case
    # every kind of caller went through the budget: 64 in flight, judges, a batch
    assert max(summary["providers"][p]["limits"]["peak_in_flight"] for p in ("gpt", "claude")) == 64
    assert summary["judges"]["judge"]["answered"] > 0 and summary["judges"]["judge"]["over_budget"] > 0
    assert summary["providers"]["batch-mini"]["answered"] == 240
    # the reports add up to the store's figure
    assert summary["cost_usd"] == pytest.approx(store_usd, abs=1e-6)
    status = json.loads(
        subprocess.run([RLHF, "status", str(config), "--json"], capture_output=True, text=True, timeout=120).stdout
    )
    assert status["cost_usd"] == pytest.approx(store_usd, abs=1e-6)

    # the same budget again: nothing is sent, the run says so and exits 8
    before = _requests(sim)
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    again = subprocess.run([RLHF, "run", str(config)], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 8, again.stdout + again.stderr
    assert "Budget reached" in again.stderr + again.stdout and f"of ${limit:.2f}" in again.stderr + again.stdout
    assert _requests(sim) == before and _store_spend(tmp_path / "out" / "b1" / "responses.sqlite")[0] == store_usd

    # a higher budget completes the batch, paying for nothing twice
    config.write_text(config.read_text().replace(f"usd: {limit}", "usd: 100.0"), encoding="utf-8")
    done = _run(config)
    assert not done["budget"]["reached"] and done["tasks_written"] == 240
    by_model = sim.stats()["by_model"]
    assert by_model["gpt-4o"]["requests"] == 240 and by_model["claude-sonnet-4-5"]["requests"] == 240
    assert sum(b["total"] for b in sim.batches()) == 240
    total_usd, _ = _store_spend(tmp_path / "out" / "b1" / "responses.sqlite")
    assert done["budget"]["limits"]["budget.usd"]["spent"] == pytest.approx(total_usd, abs=1e-6)
    assert done["cost_usd"] == pytest.approx(total_usd, abs=1e-6)
    # the exported answers carry their costs: they add up to the answers' share of the same figure
    with open(done["files"]["tasks"], encoding="utf-8") as handle:
        tasks = [json.loads(line) for line in handle]
    exported = sum(r["cost_usd"] for t in tasks for r in t["metadata"]["responses"].values())
    answers_usd = sum(p["cost_usd"] for p in done["providers"].values())
    assert exported == pytest.approx(answers_usd, abs=1e-6)
    assert answers_usd + done["judges"]["judge"]["cost_usd"] == pytest.approx(total_usd, abs=1e-6)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_plans_expected_cost_of_a_1000_prompt_run_is_within_10_percent_of_what_it_costs(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    from flows.reporting.plan import plan_run
    from simulator.answers import approx_tokens, derived_text

    sim.configure(mode="derived")  # answers of 30-400 words, by a hash of model and prompt
    models = {"gpt": ("openai", "gpt-4o"), "haiku": ("anthropic", "claude-haiku-4-5")}
    # the answer-length distribution, known from the simulator (sampled on other prompts than the run's)
    expected = {
        sid: round(sum(approx_tokens(derived_text(model, f"another prompt {i}")) for i in range(2000)) / 2000)
        for sid, (_, model) in models.items()
    }
    providers = [
        provider_entry(sim, sid, kind, model, params={"max_tokens": 1024}, max_concurrency=32)
        for sid, (kind, model) in models.items()
    ]
    config = write_config(
        tmp_path,
        providers,
        write_prompts(tmp_path / "p.jsonl", 1000),
        chunk_size=500,
        budget={"usd": 50.0, "expected_output_tokens": expected},
    )
    plan = plan_run(config)
    assert plan["calls"] == 2000 and plan["price_sources"] == dict.fromkeys(models, price_table().source)
    assert plan["budget"]["usd"] == 50.0 and plan["cost_usd_expected"] < plan["cost_usd_worst"]
    summary = _run(config)
    actual = summary["cost_usd"]
    print(f"plan expected ${plan['cost_usd_expected']:.4f}, worst ${plan['cost_usd_worst']:.4f}; actual ${actual:.4f}")
    assert summary["tasks_written"] == 1000 and not summary["budget"]["reached"]
    assert abs(plan["cost_usd_expected"] - actual) <= 0.10 * actual, (plan["cost_usd_expected"], actual)
    for sid in models:  # and per provider
        assert abs(plan["providers"][sid]["cost_usd_expected"] - summary["providers"][sid]["cost_usd"]) <= (
            0.10 * summary["providers"][sid]["cost_usd"]
        )
    assert plan["budget"]["expected_share"] == pytest.approx(plan["cost_usd_expected"] / 50.0, abs=1e-4)
    # the next plan measures the answers' length from the store: nothing left to call
    after = plan_run(config)
    assert after["calls"] == 0 and after["providers"]["gpt"]["expected_output_from"] == "store (1000 answers)"


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_a_batch_reserves_its_worst_case_at_submission_and_submits_only_what_fits(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(batch_completion_s=0.2)
    price = {"input_per_million": 1000.0, "output_per_million": 1000.0}  # $0.001 a token: easy sums
    batch = provider_entry(
        sim, "batch", "openai", "m-batch", params={"max_tokens": 100}, mode="batch", batch_poll_s=0.1, price=price
    )
    prompts = write_prompts(tmp_path / "p.jsonl", 20)
    # a worst case of (12 prompt tokens + 100) × $0.001, halved in batch mode: ≈ $0.056 a request
    config = write_config(tmp_path, [batch], prompts, budget={"usd": 0.5}, min_responses=1)
    summary = _run(config)
    submitted = sum(b["total"] for b in sim.batches())
    tally = summary["providers"]["batch"]
    assert 0 < submitted < 20 and tally["answered"] == submitted and tally["over_budget"] == 20 - submitted
    store_usd, rows = _store_spend(tmp_path / "out" / "b1" / "responses.sqlite")
    assert rows == submitted and store_usd <= 0.5 and summary["budget"]["reached"]
    # every submitted request fitted with its whole worst case: no more than the budget divided by it
    worst = summary["budget"]["limits"]["budget.usd"]["largest_refused_worst_case"]
    assert submitted <= 0.5 / worst + 1e-9
    again = _run(config)  # the same budget: nothing more is submitted
    assert sum(b["total"] for b in sim.batches()) == submitted and again["budget"]["reached"]


def test_an_answers_cost_prices_cached_input_and_cache_writes_and_records_the_price_used() -> None:
    from providers.costs import charge, price_text

    claude = ProviderConfig(source_id="c", kind="anthropic", model="claude-sonnet-4-5", mode="batch")
    result = CallResult(ok=True, input_tokens=1000, output_tokens=200, cached_input_tokens=600, cache_write_tokens=300)
    charge(result, claude.effective_price, price_text(claude))
    # 100 plain input at $1.50, 600 read at $0.15, 300 written at $1.875, 200 out at $7.50 (per million, batch)
    assert result.cost_usd == pytest.approx((100 * 1.5 + 600 * 0.15 + 300 * 1.875 + 200 * 7.5) / 1e6)
    recorded = json.loads(result.price or "")
    assert recorded["source"] == price_table().source and recorded["batch_discount"] == 0.5
    assert recorded["output_per_million"] == 7.5
    failed = charge(CallResult(ok=False, error_type="http_500"), claude.effective_price, price_text(claude))
    assert failed.cost_usd == 0.0  # an error is not billed


def test_a_prompt_longer_than_its_estimate_raises_every_later_reservation() -> None:
    async def scenario() -> None:
        limit = Limit("budget.tokens", 10_000, "tokens")
        budget = Budget([limit])
        account = budget.add_account("a", [], [limit], None)
        first = await account.reserve(100, 50)
        assert isinstance(first, Hold) and limit.reserved == 150
        account.settle(first, CallResult(ok=True, input_tokens=300, output_tokens=50))  # 3× the estimate
        assert budget.input_factor == 3.0 and limit.spent == 350
        second = await account.reserve(100, 50)
        assert isinstance(second, Hold) and second.tokens == 350

    asyncio.run(scenario())


def test_the_run_report_names_where_prices_came_from_the_budget_and_a_stale_table() -> None:
    from flows.reporting.report import markdown_report, outcome_message

    def tally(source: str | None) -> dict[str, Any]:
        return {
            "model": "m",
            "requested": 10,
            "answered": 6,
            "failed": 0,
            "failure_reasons": {},
            "skipped": 0,
            "interrupted": 0,
            "over_budget": 4,
            "latency_ms_p95": 100.0,
            "cost_usd": 1.0,
            "price_source": source,
            "breaker": None,
        }

    summary: dict[str, Any] = {
        "project": "p",
        "batch": "b",
        "layout": "n_way",
        "prompts": 10,
        "prompts_tasked": 6,
        "incomplete": 4,
        "prompts_filtered": 0,
        "tasks_written": 6,
        "rejected": 0,
        "interrupted": False,
        "wall_s": 1.0,
        "cost_usd": 2.0,
        "cost_no_price": [],
        "providers": {"a": tally("config"), "b": tally("table 2026-12-08")},
        "budget": Budget([Limit("budget.usd", 2.0, spent=1.99, refusals=8)]).to_dict(),
        "price_warning": "the price table is 120 days old",
        "files": {"tasks": "/x/tasks.jsonl"},
    }
    text = markdown_report(summary)
    assert "- prices: a config, b table 2026-12-08" in text
    assert "- budget.usd: $1.99 spent of $2.00 (reached)" in text
    assert "**warning**: the price table is 120 days old" in text
    message = outcome_message(summary)
    assert message.startswith("Budget reached: budget.usd reached: $1.99 spent of $2.00;")
    assert "a: 4 not sent (budget reached)" in message


def test_each_shard_of_a_sharded_run_gets_its_share_of_every_limit(tmp_path: Path) -> None:
    from flows.budget import run_budget

    path = _config_text(tmp_path, "budget: {usd: 20.0, tokens: 1000, providers: {gpt: 8.0}}", "gpt-4o-mini")
    priced = "model: llama-3-8b\n    price: {input_per_million: 1.0, output_per_million: 1.0}"
    path.write_text(path.read_text(encoding="utf-8").replace("model: llama-3-8b", priced), encoding="utf-8")
    config = load_config(path, require_keys=False)
    with ResponseStore(tmp_path / "s.sqlite") as store:
        whole = run_budget(config, store)
        config._shard = (1, 4)
        shard = run_budget(config, store)
    assert whole is not None and shard is not None
    assert {lim.name: lim.limit for lim in whole.limits} == {
        "budget.usd": 20.0,
        "budget.tokens": 1000,
        "budget.providers.gpt": 8.0,
    }
    assert {lim.name: lim.limit for lim in shard.limits} == {
        "budget.usd": 5.0,
        "budget.tokens": 250,
        "budget.providers.gpt": 2.0,
    }


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_a_judgement_asked_again_records_the_cost_of_every_answer_it_took(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    sim.configure(structured_invalid_probability=0.4, seed=5)
    providers = [
        provider_entry(sim, "gpt", "openai", "gpt-4o", params={"max_tokens": 100}),
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5", params={"max_tokens": 100}),
    ]
    judges = [provider_entry(sim, "judge", "openai", "judge-gpt", params={"max_tokens": 200}, price=JUDGE_PRICE)]
    config = write_config(
        tmp_path, providers, write_prompts(tmp_path / "p.jsonl", 6), judges=judges, budget={"usd": 100.0}
    )
    summary = _run(config)
    judge_requests = sim.stats()["by_model"]["judge-gpt"]["requests"]
    assert judge_requests > summary["judges"]["judge"]["requested"]  # some judgements were asked again
    store_usd, _ = _store_spend(tmp_path / "out" / "b1" / "responses.sqlite")
    # the ledger counted every answer paid for; the store's judgements carry all of them
    assert summary["budget"]["limits"]["budget.usd"]["spent"] == pytest.approx(store_usd, abs=1e-6)
    assert summary["cost_usd"] == pytest.approx(store_usd, abs=1e-6)  # (both rounded to 6 decimals)
