"""Campaigns: a list of numbers an agent calls, paced and retried.

``contacts_csv`` reads an upload; ``hours`` and ``pacing`` hold the rules (calling
hours in the callee's time zone, calls per second, back-off); ``store`` keeps all
state in the database (claims, outcomes), so a campaign survives a restart and
several processes can share one; ``runner`` ticks and dials; ``local_queue`` and
``arq_queue`` drive the runner without Redis or over it.
"""
