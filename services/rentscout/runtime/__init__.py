"""The runtime every RentScout service shares: config, logging, interceptors, pools, health, auth."""

from rentscout.wire.version import VERSION as __version__

__all__ = ["__version__"]
