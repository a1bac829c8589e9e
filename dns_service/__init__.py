"""cnm-dns: the per-host embedded resolver (names of sandboxes, aliases, `name.network`)."""
