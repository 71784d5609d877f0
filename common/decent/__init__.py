"""LISP-Decent (RFC 9962): the hash that picks an index, the DNS seed table,
pull- and push-mode helpers, and the cross-node config consistency check."""
