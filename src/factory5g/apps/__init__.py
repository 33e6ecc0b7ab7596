"""Apps: what the platform does with the data — each consumes Batches and/or issues commands.

* :mod:`factory5g.apps.alarms` — alarm rules of the site file, evaluated vectorised over every
  Batch, with the ISA-18.2 alarm lifecycle, acknowledgement, shelving and history.
* :mod:`factory5g.apps.control` — supervisory remote control: commands with deadlines,
  interlocks on live values, at-most-once execution, hold-to-run sessions and a tamper-evident
  audit log. Emergency stop stays in certified safety hardware.
* :mod:`factory5g.apps.events` — the in-process hub that carries app events (alarm transitions,
  command states) to WebSocket clients.
"""
