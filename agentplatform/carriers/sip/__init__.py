"""SIP trunk: a small, strict SIP user agent over UDP with RTP media, one protocol
per module (``messages``, ``sdp``, ...), each pure where it can be."""
