"""Protocol-faithful simulators of the platform's peers, speaking real sockets."""
