"""Plain ``--help`` pages: ``rlhf run [OPTIONS] CONFIG``, no ``<bool>`` after a flag, docstrings as Markdown.

Typer shows a required argument as ``{config}`` in the usage line and a flag's type as ``<bool>`` (a flag
takes no value); its "rich" markup mode keeps every line break of a docstring, so a paragraph wrapped in
the source breaks mid-sentence on screen. :class:`HelpTyper` makes every command (and the group) show
``CONFIG`` and nothing after a flag, and the app uses Markdown help, in which a paragraph is re-flowed to
the terminal's width and ``- item`` lines are a list.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

# Click's types (typer vendors its own copy in newer releases, and uses click's in older ones): ``Any`` here.
Parameter = Any
Context = Any

_CODE_OR_ANGLE = re.compile(r"(`+)(?:.+?)\1|(?<!\\)<")


def literal_angles(text: str | None) -> str | None:
    """``text`` with each ``<`` outside a code span escaped: in Markdown ``<batch>`` would be an HTML tag and
    vanish, and in this project's help an angle bracket is always a placeholder (``<output.dir>/<batch>``)."""
    if not text:
        return text
    return _CODE_OR_ANGLE.sub(lambda m: m.group(0) if m.group(1) else "\\<", text)


def _tidy(params: list[Parameter]) -> list[Parameter]:
    """Flags show no value type; arguments are named in capitals (``CONFIG``), as usage lines name them;
    placeholders in angle brackets are shown as written."""
    for param in params:
        if isinstance(param, (TyperOption, TyperArgument)):
            param.help = literal_angles(param.help)
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""  # shown as the type column: empty
        elif isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()
    return params


def _usage(command: Any, ctx: Context) -> list[str]:
    """``[OPTIONS] CONFIG`` (``[NAME]`` for an optional argument), never typer's ``{config}``."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if isinstance(param, TyperArgument):
            name = param.metavar or str(param.name).upper()
            pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        else:
            pieces.extend(param.get_usage_pieces(ctx))
    return pieces


class HelpCommand(TyperCommand):
    """A command whose help shows ``CONFIG`` for its argument and no ``<bool>`` after its flags."""

    def __init__(self, name: str | None, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.help = literal_angles(self.help)

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _tidy(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        return _usage(self, ctx)


class HelpGroup(TyperGroup):
    """The ``rlhf`` group: no ``<bool>`` after ``--version`` and ``--help``."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        return _tidy(super().get_params(ctx))


class HelpTyper(typer.Typer):
    """``typer.Typer`` whose commands are :class:`HelpCommand` s and whose help is Markdown."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        kwargs.setdefault("rich_markup_mode", "markdown")
        super().__init__(**kwargs)

    def command(
        self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any
    ) -> Callable[..., Any]:
        return super().command(name, cls=cls or HelpCommand, **kwargs)
