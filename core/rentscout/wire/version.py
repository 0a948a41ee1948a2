"""The version of rentscout-core (the distribution every client and server installs), sent in user agents
and logged by servers."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("rentscout-core")
except PackageNotFoundError:  # running from a source tree without install
    VERSION = "0.0.0"
