"""Number types for every config model (run config, providers, annotation templates).

Numeric strings stay accepted (``${VAR}`` expands to text); booleans and non-finite floats are errors.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError


def not_bool(value: Any) -> Any:
    """Refuse ``true``/``false`` where a number is expected (pydantic's lax mode would read 1/0)."""
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "Input should be a number, not true/false")
    return value


def finite(value: Any) -> Any:
    """Refuse NaN and infinities (YAML ``.nan``, ``.inf``, ``-.inf``), also inside lists and mappings."""
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    for item in value.values() if isinstance(value, dict) else value if isinstance(value, list) else ():
        finite(item)
    return value


ConfigInt = Annotated[int, BeforeValidator(not_bool)]
"""An integer in a config: never ``true``/``false``."""
ConfigFloat = Annotated[float, BeforeValidator(not_bool), BeforeValidator(finite), Field(allow_inf_nan=False)]
"""A number in a config: finite, never ``true``/``false``."""
