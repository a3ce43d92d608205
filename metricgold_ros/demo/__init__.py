"""The end-to-end demo: camera replay -> depth node -> recorder -> report (separate processes)."""
