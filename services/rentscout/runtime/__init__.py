"""The runtime every RentScout service shares: config, logging, interceptors, pools, health, auth."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rentscout-dataplane")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
