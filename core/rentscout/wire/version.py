"""The distribution's version, sent in user agents and logged by servers."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("rentscout-dataplane")
except PackageNotFoundError:  # running from a source tree without install
    VERSION = "0.0.0"
