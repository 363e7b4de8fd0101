"""One module per DESIGN.md §6 workload."""
