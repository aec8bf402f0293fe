# -*- coding: utf-8 -*-
"""Tax rates by country."""

RATES = {'NL': 0.21, 'DE': 0.19}
