# -*- coding: utf-8 -*-
"""An example of a cluster's services: `[services]` in cluster.toml names this directory, and
`muster apply` (or `muster deploy --cluster prod services`) deploys every module in it on every
server of the cluster."""

import inflection  # from [python]: requirements.txt, installed from the wheelhouse

from pricing.tax import with_tax  # from [python]: the package in python/packages/pricing

from zato.server.service import Service


class GetOrder(Service):
    """Returns an order by its id."""

    name = 'orders.get'

    def handle(self):
        order_id = self.request.input.get('id') or 'unknown'
        self.response.payload = {
            'id': order_id,
            'status': inflection.humanize('shipped_to_customer'),
            'total': with_tax(100, 'NL'),
        }
