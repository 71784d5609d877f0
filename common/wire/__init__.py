"""The wire: the LISP control-message codec (RFC 9301, RFC 8060), EID text, IP/UDP
headers inside ECMs and data packets, the data-plane header, and capture-file reading.
Pure bytes in, objects out."""
