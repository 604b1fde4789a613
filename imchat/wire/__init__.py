"""What crosses a process boundary, typed: bus records, gateway batches, server frames.

Every record is a dataclass with one ``encode`` and one ``decode``
(``imchat.wire.codec``). Decoding ignores fields it does not know and
defaults optional ones that are missing, so a gateway and a bus consumer of
two releases can run side by side during a rolling upgrade: a release adds
optional fields, and never changes or removes one that an older release
reads.
"""
