"""The TCP echo servers of benches/net_echo.sh on uvloop, for the streams-vs-protocol
comparison of issue 12: `protocol` echoes from `data_received`; `streams` is
`asyncio.start_server` with `readexactly(SIZE)` / `write` / `drain`, the shape of
evloop's `echo_streams --start-server --exactly SIZE`.

    python3 benches/support/uvloop_echo.py protocol|streams ADDR SIZE

Prints `listening on HOST:PORT` once bound; runs until killed.
"""
import asyncio
import sys

import uvloop


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport  # TCP_NODELAY is set by asyncio/uvloop already

    def data_received(self, data):
        self.transport.write(data)


async def main(mode, addr, size):
    host, port = addr.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    if mode == "protocol":
        server = await loop.create_server(Echo, host, int(port))
    else:

        async def handle(reader, writer):
            try:
                while True:
                    data = await reader.readexactly(size)
                    writer.write(data)
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            writer.close()

        server = await asyncio.start_server(handle, host, int(port))
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    mode, addr, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode not in ("protocol", "streams"):
        sys.exit("mode: protocol or streams")
    uvloop.run(main(mode, addr, size))
