"""Short names of proto enum values: `PROPERTY_TYPE_STUDIO` <-> 'studio'.

Every enum follows buf's STANDARD lint (values prefixed with the enum's name, zero value `*_UNSPECIFIED`), so
the prefix is read from the enum's own descriptor.
"""

from __future__ import annotations

from typing import TypeVar, cast

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

E = TypeVar("E", bound=int)


def prefix(enum: EnumTypeWrapper) -> str:
    """'PROPERTY_TYPE_' for PropertyType (its zero value minus 'UNSPECIFIED')."""
    return enum.DESCRIPTOR.values_by_number[0].name.removesuffix("UNSPECIFIED")


def short_name(enum: EnumTypeWrapper, number: int) -> str:
    """'studio' for PROPERTY_TYPE_STUDIO; ValueError for an unknown number."""
    return enum.Name(number).removeprefix(prefix(enum)).lower()


def value_of(enum: type[E], short: str) -> E:
    """PROPERTY_TYPE_STUDIO for 'studio'; ValueError for an unknown name."""
    wrapper = cast(EnumTypeWrapper, enum)
    return cast(E, wrapper.Value(prefix(wrapper) + short.upper()))


def short_names(enum: EnumTypeWrapper) -> dict[int, str]:
    """Number -> short name of every value but the zero (unspecified) one."""
    return {v.number: short_name(enum, v.number) for v in enum.DESCRIPTOR.values if v.number != 0}
