"""The `rentscout` command line."""
