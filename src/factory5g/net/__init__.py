"""The private 5G network: NR capacity (TS 38.306), TDD patterns, the 5QI catalogue (TS 23.501),
the latency model, the planner and admission, provisioning into Open5GS and free5GC, the NEF
APIs (TS 29.122 / TS 29.522) client and emulator, and the user-space link emulator.

Submodules are imported where used (``factory5g.net.plan``, ``factory5g.net.nef``...): the site
schema imports the leaf modules ``nr``, ``tdd`` and ``fiveqi`` while it is being defined.
"""
