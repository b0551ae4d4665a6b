"""What a training recipe is, for both models: a backbone family, its architecture sizes and its training settings.

:mod:`models.detector.recipes` and :mod:`models.segmentation.recipes` declare the measured recipes per family;
the CLI, the flows, the tasks and ``prefect.yaml`` leave a setting unset (``None``) to take the recipe's, and the
whole recipe is logged with every training run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

R = TypeVar("R", bound="Recipe")

_DESCRIPTIVE = ("family", "pattern", "architecture", "examples")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """The part every recipe shares.

    Attributes:
        family: Name of the backbone family, for messages and MLflow params.
        pattern: Regular expression that timm names of the family match (from the start of the name).
        architecture: Configuration fields other than the backbone and its weights.
        examples: Backbones of the family, for messages.
    """

    family: str
    pattern: str
    architecture: dict[str, Any] = field(default_factory=dict)
    examples: tuple[str, ...] = ()

    def matches(self, backbone: str) -> bool:
        """Whether ``backbone`` belongs to this family."""
        return re.match(self.pattern, backbone) is not None

    def with_overrides(self: R, **settings: Any) -> R:
        """This recipe with the given training settings replaced; ``None`` means "the recipe's".

        Raises:
            ValueError: For a name that is not a training setting of this recipe.
        """
        known = self.training_settings()
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not training settings of a recipe; known: {', '.join(known)}")
        return replace(self, **{k: v for k, v in settings.items() if v is not None})

    def training_settings(self) -> dict[str, Any]:
        """The training settings (everything but the family's description and architecture)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _DESCRIPTIVE}

    def to_params(self) -> dict[str, Any]:
        """Flat key/value pairs for experiment tracking: the family and every training setting."""
        settings = {k: list(v) if isinstance(v, tuple) else v for k, v in self.training_settings().items()}
        return {"recipe_family": self.family, **{f"recipe_{k}": v for k, v in settings.items()}}


def find_recipe(recipes: Sequence[R], backbone: str, model: str, advice: str) -> R:
    """The recipe among ``recipes`` whose family ``backbone`` belongs to.

    Raises:
        ValueError: When no family matches; the message lists the supported ones and ends with ``advice``.
    """
    for recipe in recipes:
        if recipe.matches(backbone):
            return recipe
    supported = "; ".join(f"{r.family}: {', '.join(r.examples)}" for r in recipes)
    raise ValueError(
        f"no {model} recipe for backbone {backbone!r}. Supported families (timm names): {supported}. {advice}"
    )
