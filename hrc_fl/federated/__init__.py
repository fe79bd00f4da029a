"""Engine-independent federated-learning core (no FedML import here; see the fedml_* modules for that).

Contract for transports: :class:`ClientUpdate`, :class:`AggregationResult`, :class:`Strategy`,
:func:`make_strategy`; client side: :mod:`.split`, :mod:`.training`, :mod:`.compression`.
"""

from hrc_fl.federated.core.strategies import CoordinateMedian, FedAvg, FedProx, Strategy, TrimmedMean
from hrc_fl.federated.core.strategy_config import make_strategy
from hrc_fl.federated.core.update import AggregationResult, ClientUpdate, NDArrays

__all__ = ["AggregationResult", "ClientUpdate", "CoordinateMedian", "FedAvg", "FedProx", "NDArrays",
           "Strategy", "TrimmedMean", "make_strategy"]
