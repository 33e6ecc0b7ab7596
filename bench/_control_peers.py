"""Subprocesses of bench/control.py: the devices, and the factory5g server.

``python _control_peers.py devices modbus`` — a pymodbus TCP server (holding registers 0..15;
register 10 holds the guard door bit, closed) on a free loopback port; prints ``{"modbus":
port}``. ``... devices opcua`` — an asyncua server (``ns=2;s=stand.trim``, Double, writable);
prints ``{"opcua": port}``. Two processes, as they are two devices: neither waits while the other
answers the platform's polls.

``python _control_peers.py server SITE DATA_DIR PORT`` — ``create_app`` under uvicorn, as
``factory5g up`` runs it; prints ``{"token": operator token}`` once ready.

Both run until their stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

HOST = "127.0.0.1"


async def devices(kind: str) -> None:
    if kind == "modbus":
        await _modbus()
    else:
        await _opcua()


async def _modbus() -> None:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    regs = [0] * 16
    regs[10] = 1  # guard door closed (bit 0)
    mb = ModbusTcpServer(
        SimDevice(1, SimData(0, values=regs, datatype=DataType.REGISTERS)), address=(HOST, 0)
    )
    await mb.serve_forever(background=True)
    mb_port = mb.transport.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"modbus": mb_port}), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await mb.shutdown()


async def _opcua() -> None:
    from asyncua import ua
    from asyncua.server import Server

    server = Server()
    server.disable_clock()
    await server.init()
    server.set_endpoint(f"opc.tcp://{HOST}:0/bench")
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace("urn:factory5g:bench:control")
    obj = await server.nodes.objects.add_object(
        ua.NodeId(ua.String("stand"), ua.Int16(ns)), ua.QualifiedName("stand", ns)
    )
    var = await obj.add_variable(
        ua.NodeId(ua.String("stand.trim"), ua.Int16(ns)),
        ua.QualifiedName("trim", ns),
        ua.Variant(0.0, ua.VariantType.Double),
    )
    await var.set_writable()
    await server.start()
    assert server.bserver is not None
    print(json.dumps({"opcua": server.bserver.port}), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await server.stop()


def server(site: str, data_dir: str, port: int) -> None:
    import uvicorn

    from factory5g.api import Settings, create_app
    from factory5g.api.tokens import TokenStore
    from factory5g.model import Role

    def ready(rt: object) -> None:
        with TokenStore(Path(data_dir) / "auth.sqlite") as tokens:
            token = tokens.create(Role.OPERATOR, "bench").token
        print(json.dumps({"token": token}), flush=True)

    app = create_app(Settings(site=Path(site), data_dir=Path(data_dir), port=port), on_ready=ready)
    config = uvicorn.Config(  # as `factory5g up` configures it (cli._serve)
        app,
        host=HOST,
        port=port,
        log_level="warning",
        lifespan="on",
        access_log=False,
        http="factory5g.ids.protocol:ResolutionProtocol",
    )
    srv = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(srv.serve())
        await asyncio.to_thread(sys.stdin.read)
        srv.should_exit = True
        await task

    asyncio.run(run())


if __name__ == "__main__":
    if sys.argv[1] == "devices":
        asyncio.run(devices(sys.argv[2]))
    else:
        server(sys.argv[2], sys.argv[3], int(sys.argv[4]))
