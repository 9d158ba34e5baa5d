"""Add ``SSVDO`` to ``peft.utils.PeftType``.

peft 0.21's ``register_peft_method`` accepts only names already in the ``PeftType`` enum, and
an Enum cannot be subclassed with new members, so the member is added to the enum's own tables
(``_member_map_``, ``_value2member_map_``, ``_member_names_``) exactly as a class-body member
would be. Idempotent. This is the one place that touches peft internals.
"""

from __future__ import annotations

from peft.utils import PeftType

NAME = "SSVDO"


def _extend_peft_type() -> PeftType:
    if NAME in PeftType.__members__:
        return PeftType[NAME]
    member = str.__new__(PeftType, NAME)
    member._name_ = NAME
    member._value_ = NAME
    member.__objclass__ = PeftType
    member._sort_order_ = len(PeftType._member_names_)
    PeftType._member_map_[NAME] = member
    PeftType._value2member_map_[NAME] = member
    PeftType._member_names_.append(NAME)
    type.__setattr__(PeftType, NAME, member)
    return member


SSVDO_PEFT_TYPE = _extend_peft_type()
