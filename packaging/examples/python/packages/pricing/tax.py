# -*- coding: utf-8 -*-
"""Value-added tax: imported by the services as `from pricing.tax import with_tax`."""

from .rules import RATES


def with_tax(amount, country):
    """`amount` with the tax of `country` added, rounded to cents."""
    return round(amount * (1 + RATES[country]), 2)
