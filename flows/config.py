"""The run config: a YAML file validated by pydantic, with errors that name file, line and field."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
)

from common.config_types import ConfigFloat, ConfigInt
from common.env_expand import expand_env, is_variable_name, variables_used
from common.errors import InputError, InputProblem, location
from common.images import DEFAULT_MAX_IMAGE_BYTES
from common.storage import StorageError, is_url, join, local_copy
from common.yaml_locations import (
    duplicate_keys,
    format_loc,
    line_of,
    problem_at,
    read_yaml,
    resolve_path,
    surrogate_problems,
    validation_problems,
)
from flows.budget_config import BudgetConfig, budget_problems
from flows.generation.run_date import RUN_DATE_ENV, apply_run_date
from prompts.config import PromptsConfig
from providers.config import ProviderConfig
from providers.fingerprint import same_requests
from providers.kinds import KINDS
from providers.store_factory import is_database_url
from task_builder.adaptive import pair_weights, ranked_sources, read_leaderboard
from task_builder.shapes import AnswerPolicy
from task_builder.template import AnnotationTemplate


class NotifyConfig(BaseModel):
    """``notify:`` in the run config."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: str | None = None
    timeout_s: ConfigFloat = Field(default=10.0, gt=0)
    on: list[str] = Field(default_factory=lambda: ["completed", "failed"])


class DeliveryConfig(BaseModel):
    """``delivery:`` in the run config: each chunk's tasks go to Label Studio as the run writes them
    (``flows/delivery/stream.py``; ``rlhf run --deliver label-studio`` gives the same from the command line).

    The same projects and rules as ``rlhf deliver`` (``project_title``, ``predictions``, ``judge``); the token
    is read from the variable ``token_env`` names, never written here. A delivery that fails is retried
    ``retries`` times (exponential waits from ``retry_wait_s``), then reported; generation never stops for it.
    """

    model_config = ConfigDict(extra="forbid")

    to: Literal["label-studio"] = "label-studio"
    url: str = Field(min_length=1)
    token_env: str = "LABEL_STUDIO_TOKEN"
    project_title: str | None = Field(default=None, min_length=1)
    predictions: Literal["none", "all", "half"] = "all"
    judge: str | None = None
    retries: ConfigInt = Field(default=5, ge=1, le=100)
    retry_wait_s: ConfigFloat = Field(default=1.0, ge=0, le=600)
    timeout_s: ConfigFloat = Field(default=30.0, gt=0, le=600)
    # Label Studio's overlap: each task to this many different annotators (as rlhf deliver --annotators-per-task).
    annotators_per_task: ConfigInt | None = Field(default=None, ge=1, le=100)
    # Gold tasks are not mixed into a delivery as it goes (refused, never recorded): rlhf deliver --gold.
    gold: Any = Field(default=None, exclude=True)
    gold_rate: Any = Field(default=None, exclude=True)

    @field_validator("gold", "gold_rate")
    @classmethod
    def _no_gold(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "gold tasks are not mixed into a delivery as it goes (chunk by chunk, the rate would not hold for"
                " the batch): after the run, `rlhf deliver RUN_DIR --gold FILE --gold-rate R` mixes them in"
            )
        return None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            raise ValueError("must be the Label Studio server's http:// or https:// URL, without credentials")
        return value.rstrip("/")

    @field_validator("token_env")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if not is_variable_name(value):
            raise ValueError(f"{value!r} is not an environment variable name (the variable holding the token)")
        return value


class AnnotationConfig(BaseModel):
    """How answers become tasks: the template (name, path or inline), the layout, the order seed."""

    model_config = ConfigDict(extra="forbid")

    template: Annotated[
        Annotated[str, Tag("<name>")] | Annotated[AnnotationTemplate, Tag("<inline>")],
        Discriminator(lambda value: "<name>" if isinstance(value, str) else "<inline>"),
    ] = "default"
    layout: Literal["n_way", "pairwise", "single"] = "n_way"
    pairs_per_prompt: ConfigInt | None = Field(default=None, ge=1)
    seed: ConfigInt = 0
    # Which answer shapes annotators are shown (refusals, cut-offs, ...): task_builder/shapes.py.
    answers: AnswerPolicy = Field(default_factory=AnswerPolicy)
    # How a pairwise layout with pairs_per_prompt picks its pairs: evenly (``balanced``), or ``adaptive``: in
    # proportion to how much the models' intervals overlap in ``leaderboard`` (the JSON ``rlhf leaderboard``
    # wrote, relative to the config's directory; task_builder/adaptive.py). Left out of the config hash
    # while unset (KEYS_HASHED_WHEN_SET), so configs written before them keep their hash and run id.
    pairs: Literal["balanced", "adaptive"] = "balanced"
    leaderboard: str | None = Field(default=None, min_length=1)


# Keys added after runs were made, left out of RunConfig.config_hash while they hold their defaults, so that
# a config written before them keeps its hash and run id: (section, key) -> default.
KEYS_HASHED_WHEN_SET: dict[tuple[str, str], object] = {
    ("annotation", "pairs"): "balanced",
    ("annotation", "leaderboard"): None,
    ("prompts", "max_image_bytes"): DEFAULT_MAX_IMAGE_BYTES,
    ("prompts", "image_detail"): "auto",
}


class OutputConfig(BaseModel):
    """Where results go: ``<dir>/<batch>/``."""

    model_config = ConfigDict(extra="forbid")

    dir: str = "out"
    # A SQLite file (default <dir>/<batch>/responses.sqlite) or a PostgreSQL URL (postgresql://user@host/db;
    # the password from PGPASSWORD, ~/.pgpass or the variable named by store_password_env, never the URL).
    store: str | None = None
    store_password_env: str | None = None


# The fields that name other input files.
REFERENCES = ("prompts.path", "prompts.template", "annotation.template")


class RunConfig(BaseModel):
    """A whole generation run: prompts, providers, annotation template, output."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(min_length=1)
    batch: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    prompts: PromptsConfig
    providers: list[ProviderConfig] = Field(min_length=1)
    # Judge models (README "AI feedback"): they rate every answer on the template's dimensions and give the
    # preference; their values become ``metadata.predictions``, never the annotation values.
    judges: list[ProviderConfig] = Field(default_factory=list)
    annotation: AnnotationConfig = Field(default_factory=AnnotationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    chunk_size: ConfigInt = Field(default=1000, ge=1, le=100_000)
    min_responses: ConfigInt | None = Field(default=None, ge=1)
    samples_per_provider: ConfigInt = Field(default=1, ge=1, le=16)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    # Spend limits checked before every request (flows/budget.py, README "Budgets").
    budget: BudgetConfig | None = None
    delivery: DeliveryConfig | None = None  # deliver tasks as the run writes them (flows/delivery/stream.py)

    @property
    def answers_per_prompt(self) -> int:
        """Answers asked for per prompt: providers × samples per provider."""
        return len(self.providers) * self.samples_per_provider

    @property
    def required_answers(self) -> int:
        """Answers a prompt needs to become a task: ``min_responses``, by default 2 (1 if only 1 is asked for)."""
        return self.min_responses if self.min_responses is not None else min(2, self.answers_per_prompt)

    def config_hash(self) -> str:
        """A stable hash of everything in the config (API keys are never in it: only variable names)."""
        # Notifications and delivery do not change what a run produces (and webhook URLs may hold a secret); nor
        # does a budget (raising it continues the same batch).
        # every_field: an inline template that extends another hashes with its defaults, as it always has
        # (task_builder.template.AnnotationTemplate dumps only its given keys otherwise).
        values = self.model_dump(mode="json", exclude={"notify", "delivery", "budget"}, context={"every_field": True})
        for (section, key), default in KEYS_HASHED_WHEN_SET.items():
            if key in values[section] and values[section][key] == default:
                del values[section][key]
        template = values["annotation"].get("template")
        if isinstance(template, dict):  # an inline template's display options shape delivery only, like delivery:
            template.pop("display", None)
        canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    # Set only on one shard of a sharded run (flows/sharding/shard.py): (index, count). Private, so not part of
    # the config hash: a shard's tasks carry the same run id and config hash as an unsharded run.
    _shard: tuple[int, int] | None = PrivateAttr(default=None)

    # ``file:line: field`` of each REFERENCES field in the YAML it was read from (set by load_config), so
    # that problems in the files they name also say where they were named.
    _references: dict[str, str] = PrivateAttr(default_factory=dict)

    def where(self, field: str) -> str:
        """Where ``field`` (one of :data:`REFERENCES`) was given: ``run.yaml:4: prompts.path``."""
        return self._references.get(field, field)

    @property
    def shard(self) -> tuple[int, int] | None:
        """``(index, count)`` when this config runs one shard of a batch, else ``None``."""
        return self._shard

    # The config file's directory: relative paths in the config (prompts, templates, output) are relative
    # to it. Set by load_config; the working directory for a config built in code.
    _base_dir: Path = PrivateAttr(default=Path("."))

    def recorded(self) -> dict[str, Any]:
        """What a run directory's ``run.json`` keeps of this config (:func:`config_from_record` reads it back).

        Every value as the run resolved it (``${VAR}`` expanded, ``{date}`` and prompt globs applied), so the
        commands that call no provider (``rlhf status RUN_DIR``, ``deliver``, ``harvest``) read the run as it
        was and need none of its variables. No secret is in it: keys are only named (``api_key_env``), a
        secret's variable is never expanded into a value, and ``notify`` (a webhook URL may hold a token) is
        left out, as it is of :meth:`config_hash`.
        """
        return {
            "values": self.model_dump(mode="json", exclude={"notify"}),
            "base_dir": str(self._base_dir.absolute()),
            "references": dict(self._references),
            "shard": list(self._shard) if self._shard is not None else None,
        }

    @property
    def base_dir(self) -> Path:
        """The directory relative paths in this config are relative to: the config file's."""
        return self._base_dir

    @property
    def output_is_url(self) -> bool:
        """Whether the outputs go to object storage (``output.dir: s3://…``): they are then written in a local
        staging directory (:attr:`batch_dir`) and uploaded whole when the run ends."""
        return is_url(self.output.dir)

    @property
    def batch_dir(self) -> Path:
        """``<output.dir>/<batch>``: the batch's directory (a shard writes under ``shards/<index>/`` in it); for
        outputs at a URL, the local staging directory of ``<url>/<batch>``."""
        if self.output_is_url:
            return staging_dir(self.output.dir) / self.batch
        return resolve_path(self._base_dir, self.output.dir) / self.batch

    @property
    def run_location(self) -> str | Path:
        """Where this run's files end up: :attr:`run_dir`, or its URL for outputs in object storage."""
        if not self.output_is_url:
            return self.run_dir
        location = join(self.output.dir, self.batch)
        return location if self._shard is None else join(location, "shards", str(self._shard[0]))

    @property
    def run_dir(self) -> Path:
        """``<output.dir>/<batch>`` (a shard: ``<output.dir>/<batch>/shards/<index>``): every file of this run lives here."""
        return self.batch_dir if self._shard is None else self.batch_dir / "shards" / str(self._shard[0])

    @property
    def store_is_database(self) -> bool:
        """Whether the response store is a PostgreSQL database (``output.store: postgresql://…``)."""
        return self.output.store is not None and is_database_url(self.output.store)

    @property
    def store_location(self) -> str | Path:
        """Where the response store is: a database URL (shared by every shard), else :attr:`store_path`."""
        return str(self.output.store) if self.store_is_database else self.store_path

    @property
    def store_path(self) -> Path:
        """The response store's SQLite file (a shard always has its own, in its run directory)."""
        if self._shard is not None:
            return self.run_dir / "responses.sqlite"
        return (
            resolve_path(self._base_dir, self.output.store) if self.output.store else self.run_dir / "responses.sqlite"
        )


def staging_dir(url: str) -> Path:
    """The local directory where a run writes outputs bound for ``url`` before uploading them."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "rlhf-staging" / digest


def config_from_record(record: Any) -> RunConfig | None:
    """The config a run recorded in its ``run.json`` (:meth:`RunConfig.recorded`); None when there is no
    record (a run directory of an earlier version) or this version cannot read it."""
    if not isinstance(record, dict) or not isinstance(record.get("values"), dict):
        return None
    try:
        config = RunConfig.model_validate(record["values"])
    except ValidationError:
        return None
    config._base_dir = config.prompts._base_dir = Path(str(record.get("base_dir") or "."))
    references = record.get("references")
    if isinstance(references, dict):
        config._references = {str(field): str(where) for field, where in references.items()}
    shard = record.get("shard")
    if isinstance(shard, list) and len(shard) == 2 and all(isinstance(n, int) for n in shard):
        config._shard = (shard[0], shard[1])
    return config


def load_config(path: str | Path, *, require_keys: bool = True, resolve_providers: bool = True) -> RunConfig:
    """Read and validate a run config; raise :class:`InputError` naming file, line and field.

    With ``require_keys`` every provider's API key variable must be set (its value is never read here).
    ``path`` may be an object-storage URL (``s3://…``): the config is read from there, and the files it
    names must then be URLs or absolute paths (there is no directory to be relative to).

    With ``resolve_providers`` False (and ``require_keys`` False), an unset variable in a provider's or a
    judge's entry is no error: the field holding it is left out (its default applies; a required field keeps
    the text as written). Such a config serves what a run wrote (its project, batch and annotation
    template), never calls or request fingerprints.
    """
    from_url = is_url(path)
    name = str(path)
    if from_url:
        try:
            path = local_copy(str(path))
        except StorageError as exc:
            raise InputError([InputProblem(name, None, str(exc))]) from None
    path = Path(path)
    base_dir = path.parent
    root, data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError([InputProblem(name, 1, "the config must be a YAML mapping (key: value)")])
    duplicates = [InputProblem(name, line, f"key '{key}' appears more than once") for line, key in duplicate_keys(root)]
    if duplicates:
        raise InputError(duplicates)
    raw, (data, unset) = data, expand_env(data)
    if not resolve_providers:
        unset = _leave_out_unresolved_providers(data, unset)
    secrets = _secret_problems(name, root, raw, data)
    if secrets or unset:
        raise InputError(
            secrets + [problem_at(name, root, loc, f"environment variable {var} is not set") for loc, var in unset]
        )
    try:
        data = apply_run_date(data, base_dir)
    except ValueError as exc:
        raise InputError([InputProblem(name, None, f"{RUN_DATE_ENV}: {exc}")]) from None
    # Checked last: a variable's value, or a file name a glob matched, may not be valid Unicode either.
    surrogates = surrogate_problems(name, root, data)
    if surrogates:
        raise InputError(surrogates)
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(validation_problems(name, root, exc, RunConfig)) from None
    config._references = {field: location(name, line_of(root, field.split(".")), field) for field in REFERENCES}
    config._base_dir = config.prompts._base_dir = base_dir
    problems = _duplicate_source_ids(config, name, root) + _store_left_behind(config, name, root)
    problems += _same_requests(config, name, root)
    problems += _output_kind_problems(config, name, root)
    problems += _object_storage_problems(config, name, root, from_url)
    problems += budget_problems(config.budget, config.providers, config.judges, name, root)
    if config.min_responses is not None and config.min_responses > config.answers_per_prompt:
        problems.append(
            problem_at(
                name,
                root,
                ("min_responses",),
                f"{config.min_responses} answers required but only {config.answers_per_prompt} are asked for per prompt",
            )
        )
    problems += _delivery_problems(config, name, root, require_keys)
    problems += _adaptive_problems(config, name, root)
    if require_keys:
        problems += _missing_keys(config, name, root)
    if problems:
        raise InputError(problems)
    return config


def _leave_out_unresolved_providers(
    data: dict[str, Any], unset: list[tuple[tuple[int | str, ...], str]]
) -> list[tuple[tuple[int | str, ...], str]]:
    """Leave out of ``data`` the provider and judge fields that use an unset variable (a required field keeps
    its text); return the unset variables elsewhere, which are still errors."""
    required = {name for name, field in ProviderConfig.model_fields.items() if field.is_required()}
    left = []
    for loc, variable in unset:
        entries = data.get(str(loc[0])) if len(loc) >= 3 and loc[0] in ("providers", "judges") else None
        entry = entries[loc[1]] if isinstance(entries, list) and isinstance(loc[1], int) else None
        if not isinstance(entry, dict):
            left.append((loc, variable))
        elif loc[2] not in required:
            entry.pop(loc[2], None)
    return left


def _object_storage_problems(
    config: RunConfig, name: str, root: yaml.Node | None, from_url: bool
) -> list[InputProblem]:
    """What object storage requires: a database store beside outputs at a URL, and no relative paths in a
    config read from a URL."""
    problems = []
    if config.output_is_url and not config.store_is_database:
        problems.append(
            problem_at(
                name,
                root,
                ("output", "store") if config.output.store else ("output", "dir"),
                "with output.dir at a URL the response store must be a PostgreSQL database (output.store: "
                "postgresql://…): a SQLite file cannot live in object storage, and every worker must reach it",
            )
        )
    if from_url:
        for field, value in (("prompts.path", config.prompts.path), ("output.dir", config.output.dir)):
            if not is_url(value) and not Path(value).is_absolute():
                problems.append(
                    problem_at(
                        name,
                        root,
                        tuple(field.split(".")),
                        f"'{value}' is relative, but this config was read from a URL: give a URL or an absolute path",
                    )
                )
    return problems


def _secret_problems(
    name: str, root: yaml.Node | None, raw: dict[str, Any], data: dict[str, Any]
) -> list[InputProblem]:
    """Secrets stay in their environment variables, and are never printed.

    A field that names a secret's variable (``api_key_env``, ``output.store_password_env``) must hold a
    variable's name: anything else (a key pasted there, or ``${OPENAI_API_KEY}``, which puts the key there)
    is refused without being printed. And no secret's variable (any provider's or judge's ``api_key_env``,
    each kind's default key variable, ``store_password_env``) may be expanded into another value: a system
    prompt, say, is stored and delivered with the tasks. ``raw`` is the config before ``${…}`` expansion.
    """
    secrets = {kind.default_key_env: f"the API key variable of kind '{key}'" for key, kind in KINDS.items()}
    name_fields: list[tuple[tuple[int | str, ...], str, str, str]] = []  # (loc, value, what it holds, example)
    for field in ("providers", "judges"):
        entries = data.get(field)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict):
                continue
            kind = entry.get("kind")
            default = KINDS[kind].default_key_env if isinstance(kind, str) and kind in KINDS else "OPENAI_API_KEY"
            given = entry.get("api_key_env")
            if isinstance(given, str):
                name_fields.append(((field, index, "api_key_env"), given, f"the API key of {field}[{index}]", default))
    output = data.get("output")
    if isinstance(output, dict) and isinstance(output.get("store_password_env"), str):
        name_fields.append(
            (
                ("output", "store_password_env"),
                output["store_password_env"],
                "the response store's password",
                "PGPASSWORD",
            )
        )

    used = variables_used(raw)
    problems = []
    for loc, value, holds, example in name_fields:
        expanded = [variable for where, variable in used if where == loc]
        field = format_loc(loc).rsplit(".", 1)[-1]
        if expanded and not (is_variable_name(value) and value in os.environ):
            problems.append(
                problem_at(
                    name,
                    root,
                    loc,
                    f"takes the NAME of the environment variable that holds {holds}: write '{field}: "
                    f"{expanded[0]}', not '${{{expanded[0]}}}', which puts the variable's value here (not shown)",
                )
            )
        elif not is_variable_name(value):
            problems.append(
                problem_at(
                    name,
                    root,
                    loc,
                    f"takes the NAME of the environment variable that holds {holds} (such as {example}), not the "
                    "secret itself: what is given is not a variable name (letters, digits and _), and is not shown",
                )
            )
        else:
            secrets[value] = f"the variable of {holds}"
    names = {where for where, *_ in name_fields}
    for where, variable in used:
        if variable in secrets and where not in names:
            problems.append(
                problem_at(
                    name,
                    root,
                    where,
                    f"expands ${{{variable}}}, {secrets[variable]}: a secret is read from its variable where it is "
                    "used, never put into the config (this value would be printed, stored and delivered with the "
                    "tasks)",
                )
            )
    return problems


def _output_kind_problems(config: RunConfig, name: str, root: yaml.Node | None) -> list[InputProblem]:
    """``output.dir`` (and the batch's directory in it) must be directories, ``output.store`` a file: else the
    run could write nothing, after every prompt was read and checked."""
    problems = []
    if not config.output_is_url:
        batch_dir = config.batch_dir
        for path in (batch_dir, *batch_dir.parents):
            if path.exists():
                if not path.is_dir():
                    what = f"{path} (the directory of batch '{config.batch}')" if path == batch_dir else str(path)
                    problems.append(
                        problem_at(
                            name,
                            root,
                            ("output", "dir"),
                            f"{what} is a file, not a directory: output.dir names the directory each batch's "
                            "directory is made in",
                        )
                    )
                break
    if config.output.store and not config.store_is_database:
        store = config.store_path
        if store.is_dir():
            problems.append(
                problem_at(
                    name,
                    root,
                    ("output", "store"),
                    f"{store} is a directory: output.store names the response store's SQLite file (such as "
                    f"{store / 'responses.sqlite'})",
                )
            )
        else:
            for path in store.parents:
                if path.exists():
                    if not path.is_dir():
                        problems.append(
                            problem_at(
                                name,
                                root,
                                ("output", "store"),
                                f"{path} is a file, not a directory: the response store {store} cannot be made in it",
                            )
                        )
                    break
    return problems


def _store_left_behind(config: RunConfig, name: str, root: yaml.Node | None) -> list[InputProblem]:
    """A store where an earlier version put it (relative to the working directory) but none where this
    config now says: refuse, rather than ask every provider again for answers already paid for."""
    if config.base_dir.absolute() == Path.cwd() or config.store_is_database:
        return []
    field, written = ("output.store", config.output.store) if config.output.store else ("output.dir", config.output.dir)
    if Path(written).is_absolute():
        return []
    old = Path(written) if config.output.store else Path(written) / config.batch / "responses.sqlite"
    if config.store_path.exists() or not old.is_file():
        return []
    return [
        problem_at(
            name,
            root,
            tuple(field.split(".")),
            f"'{written}' is relative to the config file's directory ({config.base_dir.absolute()}), so this batch's "
            f"store is {config.store_path.absolute()}; but a store of the batch exists at {old.absolute()} (relative to "
            "the working directory, where earlier versions put it): write output paths relative to the config "
            "file or as absolute paths, or move that directory, so its answers are not paid for again",
        )
    ]


def _duplicate_source_ids(config: RunConfig, name: str, root: yaml.Node | None) -> list[InputProblem]:
    """Every provider and judge ``source_id`` once; judges call online (batch mode is for answers)."""
    seen: set[str] = set()
    problems = []
    for field, entries in (("providers", config.providers), ("judges", config.judges)):
        for index, provider in enumerate(entries):
            if provider.source_id in seen:
                problems.append(
                    problem_at(name, root, (field, index, "source_id"), f"duplicate '{provider.source_id}'")
                )
            seen.add(provider.source_id)
            if field == "judges" and provider.is_batch:
                problems.append(
                    problem_at(
                        name,
                        root,
                        (field, index, "mode"),
                        "judges call online: a judgement is validated and retried as it arrives (mode: batch is "
                        "for the providers' answers)",
                    )
                )
    return problems


def _same_requests(config: RunConfig, name: str, root: yaml.Node | None) -> list[InputProblem]:
    """Providers (or judges) that differ only in their base URL: their requests have one fingerprint."""
    problems = []
    for field, entries in (("providers", config.providers), ("judges", config.judges)):
        for earlier, later in same_requests(entries):
            message = (
                f"'{entries[later].source_id}' sends the same requests as '{entries[earlier].source_id}' (kind, "
                "model, params, system_prompt) to another base_url, and where a request goes is not part of what "
                "makes it the same: their answers would be stored as one. If the servers hold different weights "
                "under one model name, give each provider its own endpoint_id; if they serve the same model, keep "
                "one provider (samples_per_provider asks it for more answers)"
            )
            problems.append(problem_at(name, root, (field, later, "base_url"), message))
    return problems


def _missing_keys(config: RunConfig, name: str, root: yaml.Node | None) -> list[InputProblem]:
    problems = []
    entries = [("providers", i, p) for i, p in enumerate(config.providers)]
    entries += [("judges", i, p) for i, p in enumerate(config.judges)]
    for field, index, provider in entries:
        if provider.api_key_secret is None and not os.environ.get(provider.key_env):
            problems.append(
                problem_at(
                    name,
                    root,
                    (field, index, "api_key_env"),
                    f"environment variable {provider.key_env} is not set (the API key of '{provider.source_id}')",
                )
            )
    return problems


def _delivery_problems(config: RunConfig, name: str, root: yaml.Node | None, require_keys: bool) -> list[InputProblem]:
    """A ``delivery:`` block's judge must be one of the run's judges; its token's variable must be set
    (with ``require_keys``: the run is about to start)."""
    delivery = config.delivery
    if delivery is None:
        return []
    problems = []
    judges = [judge.source_id for judge in config.judges]
    if delivery.judge is not None and delivery.judge not in judges:
        problems.append(
            problem_at(
                name,
                root,
                ("delivery", "judge"),
                f"'{delivery.judge}' is not one of the run's judges ({', '.join(judges) or 'none configured'})",
            )
        )
    if require_keys and not os.environ.get(delivery.token_env):
        problems.append(
            problem_at(
                name,
                root,
                ("delivery", "token_env"),
                f"environment variable {delivery.token_env} is not set (the Label Studio token)",
            )
        )
    return problems


def _adaptive_problems(config: RunConfig, name: str, root: yaml.Node | None) -> list[InputProblem]:
    """``annotation.pairs: adaptive`` needs a pairwise layout choosing ``pairs_per_prompt`` pairs and a
    readable ``leaderboard`` that ranks some of the run's models; a ``leaderboard`` needs ``pairs: adaptive``."""
    annotation = config.annotation
    if annotation.pairs != "adaptive":
        if annotation.leaderboard is None:
            return []
        return [
            problem_at(name, root, ("annotation", "leaderboard"), "a leaderboard is only read with 'pairs: adaptive'")
        ]
    at = ("annotation", "pairs")
    if annotation.layout != "pairwise":
        return [
            problem_at(name, root, at, f"'adaptive' needs 'layout: pairwise' (the layout is '{annotation.layout}')")
        ]
    if annotation.pairs_per_prompt is None:
        return [
            problem_at(
                name,
                root,
                at,
                "'adaptive' needs 'pairs_per_prompt' (with every pair per prompt there is nothing to choose)",
            )
        ]
    if annotation.leaderboard is None:
        return [problem_at(name, root, at, "'adaptive' needs 'leaderboard': the JSON `rlhf leaderboard` wrote")]
    try:
        sources = ranked_sources(read_leaderboard(resolve_path(config.base_dir, annotation.leaderboard)))
    except ValueError as exc:
        return [problem_at(name, root, ("annotation", "leaderboard"), str(exc))]
    run_sources = sorted(provider.source_id for provider in config.providers)
    if not sources & set(run_sources):
        return [
            problem_at(
                name,
                root,
                ("annotation", "leaderboard"),
                f"the leaderboard ranks none of the run's models ({', '.join(run_sources)}; it ranks "
                f"{', '.join(sorted(sources))})",
            )
        ]
    return []


def adaptive_pair_weights(config: RunConfig) -> dict[tuple[str, str], float] | None:
    """The pair weights of ``annotation.pairs: adaptive`` (None when pairs are balanced)."""
    annotation = config.annotation
    if annotation.pairs != "adaptive" or annotation.leaderboard is None:
        return None
    board = read_leaderboard(resolve_path(config.base_dir, annotation.leaderboard))
    return pair_weights(board, [provider.source_id for provider in config.providers])
