"""Layer `cli`: the `medregionct` command."""
