"""The network part of a job spec: a model family and that family's knobs, checked by the family.

``ModelSpec`` validates its knobs with the family's own knobs model, found in this process's
registry (built-ins and loaded plugins) or in the catalog of published families that the caller
passes as pydantic's validation context (``regsearch.domain.families.validation_context``), and
keeps the family it was checked by, so its slots and knobs need no second lookup.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from regsearch.domain import families
from regsearch.domain.model_label import format_model


class ModelSpec(BaseModel):
    """The network: a ``family`` (``regsearch.domain.families``) with that family's knobs beside it.

    The family's own knobs model validates them (errors name ``model.depth``; an unknown family
    lists the known ones); they are stored with their defaults filled in.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    family: str = "mlp"
    _info: families.FamilyInfo | None = PrivateAttr(default=None)  # the family the knobs were checked by

    @model_validator(mode="wrap")
    @classmethod
    def _family_knobs(cls, data: Any, handler: ModelWrapValidatorHandler[ModelSpec],
                      info: ValidationInfo) -> ModelSpec:
        # The family comes from this process's registry, or from the catalog of published
        # families the caller passes as validation context (families.validation_context).
        if isinstance(data, ModelSpec):
            return data
        found, checked = families.checked_model(data, families.catalog_in(info.context))
        model = handler(checked)
        model._info = found
        return model

    @property
    def info(self) -> families.FamilyInfo:
        """The family's description (for a plugin: as the validating catalog gave it)."""
        return self._info if self._info is not None else families.family(self.family)

    @property
    def knobs(self) -> BaseModel:
        """The family's knobs model, validated (``spec.model.knobs.depth``)."""
        return self.info.knobs.model_validate(self.model_extra or {})

    def n_slots(self, input_shape: list[int] | None = None) -> int | None:
        """How many slots the model has; None when that depends on the (unknown) input shape."""
        return families.n_slots(self.info, self.knobs, input_shape)

    def describe(self) -> str:
        """One line for people: ``resnet depth=8 width=16 activation=relu`` (regsearch.domain.model_label)."""
        return format_model({"family": self.family, **(self.model_extra or {})})
