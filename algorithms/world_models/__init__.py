"""World-model algorithms: STORM (``storm.py``; networks in ``storm_nets.py``, losses in ``storm_losses.py``)."""
