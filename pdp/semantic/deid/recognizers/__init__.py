"""The French recognizers, one module each; importing this package registers them all."""

from __future__ import annotations

from pdp.semantic.deid.recognizers import address, dates, email, hospital_id, ner, nir, person, phone
from pdp.semantic.deid.recognizers.base import RECOGNIZERS, FrRecognizer, Rule, register
from pdp.semantic.deid.recognizers.identity import IdentityRecognizer

__all__ = ["RECOGNIZERS", "FrRecognizer", "IdentityRecognizer", "Rule", "register"]

_MODULES = (address, dates, email, hospital_id, ner, nir, person, phone)  # imported for their registration
