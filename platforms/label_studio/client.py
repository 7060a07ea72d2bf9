"""A small Label Studio REST client over ``httpx``: projects, task import and export, annotations.

Why plain ``httpx`` and not ``label-studio-sdk``: we use six endpoints; the SDK pins its own
dependency tree (pydantic, httpx, lxml …) and changes its surface between releases, while this REST API
has been stable for years. Both token kinds work: a legacy token (``Authorization: Token …``) and a
personal access token, a JWT refresh token that is exchanged at ``/api/token/refresh`` for a short-lived
access token (``Authorization: Bearer …``), renewed when it expires.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from pydantic import SecretStr

from common.secrets import scrub

IMPORT_BATCH = 500
PAGE_SIZE = 500


class LabelStudioError(Exception):
    """A failed Label Studio request: method, path, status and the server's message (no token)."""


def _one_line(text: str, limit: int = 300) -> str:
    """``text`` with whitespace folded to single spaces, cut to ``limit`` characters (an HTML error page
    would otherwise fill the terminal)."""
    folded = " ".join(text.split())
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"


def is_personal_access_token(token: str) -> bool:
    """Personal access tokens are JWTs (three dot-separated parts); legacy tokens are 40 hex digits."""
    return token.count(".") == 2


class LabelStudioClient:
    """Talks to one Label Studio server with one token."""

    def __init__(self, url: str, token: SecretStr, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)
        self._pat = is_personal_access_token(token.get_secret_value())
        self._auth = "" if self._pat else f"Token {token.get_secret_value()}"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _refresh(self) -> None:
        response = self._http.post("/api/token/refresh", json={"refresh": self._token.get_secret_value()})
        if response.status_code != 200:
            raise LabelStudioError(
                f"POST /api/token/refresh: HTTP {response.status_code}: personal access token refused"
            )
        try:
            self._auth = f"Bearer {response.json()['access']}"
        except (ValueError, KeyError, TypeError):
            raise LabelStudioError("POST /api/token/refresh: the answer holds no access token") from None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; returns the decoded JSON (or None for an empty body).

        Every failure is a :class:`LabelStudioError` with a one-line message: the server not reached, an
        HTTP error (with the start of its body, whitespace folded) or an answer that is not JSON.
        """
        try:
            if self._pat and not self._auth:
                self._refresh()
            response = self._http.request(method, path, headers={"Authorization": self._auth}, **kwargs)
            if response.status_code == 401 and self._pat:
                self._refresh()
                response = self._http.request(method, path, headers={"Authorization": self._auth}, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioError(
                f"{method} {self.url}{path}: {type(exc).__name__}: cannot reach Label Studio"
            ) from None
        if response.status_code >= 400:
            detail = scrub(response.text, (self._token.get_secret_value(),))
            raise LabelStudioError(f"{method} {path}: HTTP {response.status_code}: {_one_line(detail)}")
        try:
            return response.json() if response.content else None
        except ValueError:
            raise LabelStudioError(
                f"{method} {self.url}{path}: HTTP {response.status_code}, but the answer is not JSON "
                f"(is {self.url} a Label Studio?): {_one_line(response.text, 120)}"
            ) from None

    def _pages(self, path: str, params: dict[str, Any], key: str) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            try:
                data = self.request("GET", path, params={**params, "page": page, "page_size": PAGE_SIZE})
            except LabelStudioError as exc:
                if "HTTP 404" in str(exc) and page > 1:  # past the last page
                    return
                raise
            items = data.get(key, []) if isinstance(data, dict) else data
            yield from items
            last = isinstance(data, dict) and "next" in data and not data["next"]
            if last or len(items) < PAGE_SIZE:
                return
            page += 1

    def find_project(self, title: str) -> dict[str, Any] | None:
        """The project with exactly this title, if one exists."""
        for project in self._pages("/api/projects", {"title": title}, "results"):
            if project.get("title") == title:
                return project
        return None

    def ensure_project(self, title: str, label_config: str, description: str = "") -> tuple[dict[str, Any], bool]:
        """The project with this title (its labeling config updated) or a new one; ``True`` if created."""
        project = self.find_project(title)
        if project is None:
            created = self.request(
                "POST", "/api/projects", json={"title": title, "label_config": label_config, "description": description}
            )
            return created, True
        if project.get("label_config") != label_config:
            project = self.request("PATCH", f"/api/projects/{project['id']}", json={"label_config": label_config})
        return project, False

    def set_overlap(self, project_id: int, annotators_per_task: int) -> dict[str, Any]:
        """Ask for ``annotators_per_task`` annotations of every task: the project's ``maximum_annotations``
        (a task is done, ``is_labeled``, once it has that many; Label Studio keeps serving it to other
        annotators until then) with ``overlap_cohort_percentage`` 100 (every task, not a sample)."""
        if annotators_per_task < 1:
            raise ValueError(f"annotators per task must be 1 or more, not {annotators_per_task}")
        updated: dict[str, Any] = self.request(
            "PATCH",
            f"/api/projects/{project_id}",
            json={"maximum_annotations": annotators_per_task, "overlap_cohort_percentage": 100},
        )
        return updated

    def task_ids(self, project_id: int) -> dict[str, int]:
        """Our ``task_id`` -> Label Studio task id, for every task of the project."""
        found: dict[str, int] = {}
        for task in self._pages("/api/tasks", {"project": project_id, "fields": "all"}, "tasks"):
            ours = (task.get("data") or {}).get("task_id")
            if ours:
                found[str(ours)] = int(task["id"])
        return found

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> int:
        """Import tasks in batches; returns how many the server created."""
        created = 0
        for start in range(0, len(tasks), IMPORT_BATCH):
            batch = tasks[start : start + IMPORT_BATCH]
            result = self.request("POST", f"/api/projects/{project_id}/import", json=batch)
            created += int((result or {}).get("task_count", len(batch)))
        return created

    def export(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project with its annotations (Label Studio's JSON export)."""
        data = self.request(
            "GET", f"/api/projects/{project_id}/export", params={"exportType": "JSON", "download_all_tasks": "true"}
        )
        return list(data or [])

    def users(self) -> dict[int, str]:
        """User id -> e-mail (or username), to name annotators in harvested tasks."""
        found = self.request("GET", "/api/users") or []
        return {int(u["id"]): str(u.get("email") or u.get("username") or u["id"]) for u in found}

    def create_personal_access_token(self) -> SecretStr:
        """A new personal access token for the token's user (needs the legacy token or a session)."""
        return SecretStr(self.request("POST", "/api/token/")["token"])

    def create_annotation(
        self, ls_task_id: int, result: list[dict[str, Any]], lead_time: float = 10.0
    ) -> dict[str, Any]:
        """Submit an annotation as the token's user (what the labeling UI sends)."""
        created: dict[str, Any] = self.request(
            "POST", f"/api/tasks/{ls_task_id}/annotations", json={"result": result, "lead_time": lead_time}
        )
        return created
