"""httploop: the emulator's API listeners on one asyncio event loop.

A thread per connection made the login storm pay for 64 threads taking turns
on the GIL; one loop serves the same connections at about four fifths of the
CPU. The requests are still parsed and answered by the emulator's
http.server handler class, unchanged, over an in-memory reader: a read that
would block raises NeedMore, and the request is parsed again when more bytes
arrive. A handler that wants to wait (the latency fault) leaves a deferred
continuation instead of sleeping; the connection answers nothing else until
it has run, so pipelined requests keep their order.

Behaviour kept from the threaded server: TLS handshakes never stall the
accept loop (HANDSHAKE_TIMEOUT each), an idle connection is closed after the
handler's timeout, a connection the handler closes is drained first (FIN,
then unread input discarded for at most linger_s / linger_bytes) so that a
refusal is not destroyed by a RST, and a reset the handler asks for is an RST.
"""

import asyncio
import io
import socket
import struct
import sys
import threading


class NeedMore(Exception):
    """The buffered bytes end before the request does."""


class BufferReader:
    """The part of a file's interface the handlers read with, over the
    bytes received so far; eof: no more will come."""

    def __init__(self, buf, eof):
        self.buf, self.pos, self.eof = buf, 0, eof

    def readline(self, limit=-1):
        end = self.buf.find(b"\n", self.pos)
        end = len(self.buf) if end < 0 else end + 1
        if 0 <= limit < end - self.pos:
            end = self.pos + limit
        elif end == len(self.buf) and not self.buf.endswith(b"\n", self.pos) and not self.eof:
            raise NeedMore()
        line = bytes(self.buf[self.pos:end])
        self.pos = end
        return line

    def read(self, n=-1):
        avail = len(self.buf) - self.pos
        if n < 0 or n > avail:
            if not self.eof:
                raise NeedMore()
            n = avail
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data


class _Connection(asyncio.Protocol):
    def __init__(self, server):
        self.server = server
        self.loop = server.loop
        self.transport = None
        self.handler = None
        self.buf = bytearray()
        self.eof = False
        self.busy = False           # a deferred answer is pending
        self.draining = False       # closed by the handler: discarding input
        self.drained = 0
        self.timer = None
        self.active = 0.0           # loop time of the last input or answer
        self.interim = b""          # an interim answer sent before the request was whole

    # -- asyncio callbacks -------------------------------------------------
    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.handler = self.server.handler_class.attach(
            sock, transport.get_extra_info("peername"), self.server)
        self._touch()
        self._arm(self.handler.timeout)

    def data_received(self, data):
        if self.draining:
            self.drained += len(data)
            if self.drained >= self.server.linger_bytes:
                self._close()
            return
        self.buf += data
        self._touch()
        self._serve()

    def eof_received(self):
        self.eof = True
        if self.draining:
            self._close()
            return False
        self._serve()
        # A plain connection stays half-open until the answers are out
        # (TLS transports close on EOF whatever this returns).
        return self.server.tls_ctx is None

    def connection_lost(self, exc):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport = None

    # -- serving ------------------------------------------------------------
    def _serve(self):
        """Answer every complete request buffered, in order."""
        while self.transport is not None and not self.busy and not self.draining:
            if not self.buf:
                if self.eof:
                    self._close()
                return
            h = self.handler
            reader = BufferReader(self.buf, self.eof)
            h.rfile, h.wfile = reader, io.BytesIO()
            try:
                h.handle_one_request()
            except NeedMore:
                # An interim answer (100 Continue) goes out once, now; the
                # request is parsed again when more bytes arrive.
                self._send(h.wfile.getvalue())
                return
            finally:
                h.rfile = None
            del self.buf[:reader.pos]
            out = self._send(h.wfile.getvalue())
            self.interim = b""
            deferred = h.take_deferred()
            if deferred is not None:
                self.busy = True
                self.loop.call_later(deferred[0], self._resume, deferred[1])
                if len(self.buf) > self.server.max_buffered:
                    self.transport.pause_reading()
                return
            if not self._after(out):
                return

    def _send(self, data):
        """Write the handler's output but for the interim part already sent."""
        if self.interim and data.startswith(self.interim):
            data = data[len(self.interim):]
        elif data:
            self.interim = data
        if data:
            self.transport.write(data)
        return data

    def _resume(self, resume):
        """The deferred part of an answer; it runs even if the client left,
        as it would have in a thread."""
        self.busy = False
        h = self.handler
        h.wfile = io.BytesIO()
        resume()
        if self.transport is None:
            return
        self.transport.resume_reading()
        data = h.wfile.getvalue()
        if data:
            self.transport.write(data)
        if self._after(data):
            self._touch()
            self._serve()

    def _after(self, data):
        """The connection after an answer: False if it ends."""
        h = self.handler
        if h.reset_requested:
            self._reset()
            return False
        if h.close_connection:
            self._linger()
            return False
        return True

    # -- closing ------------------------------------------------------------
    def _touch(self):
        # The idle timer is not moved on each request (a timer handle
        # each time): when it fires, it looks at the last activity.
        self.active = self.loop.time()

    def _arm(self, seconds, callback=None):
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(seconds, callback or self._idle)

    def _idle(self):
        self.timer = None
        left = self.active + self.handler.timeout - self.loop.time()
        if self.busy:
            self._arm(self.handler.timeout)
        elif left > 0:
            self._arm(left)
        else:
            self._close()

    def _linger(self):
        """Half-close, then read and discard what the client still sends, so
        that closing with unread input does not send a RST over the answer."""
        self.draining = True
        self.buf = bytearray()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self.eof:
            self._close()
            return
        self._arm(self.server.linger_s, self._close)

    def _reset(self):
        sock = self.transport.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.transport.abort()

    def _close(self):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()


class Listener:
    """One listening socket on the loop (plain HTTP or TLS)."""

    max_buffered = 8 << 20         # unanswered input kept before reading pauses

    def __init__(self, loop, addr, handler_class, tls_ctx, handshake_timeout,
                 linger_s, linger_bytes, on_accept, attrs):
        self.loop, self.handler_class, self.tls_ctx = loop, handler_class, tls_ctx
        self.linger_s, self.linger_bytes = linger_s, linger_bytes
        self.on_accept = on_accept
        for k, v in attrs.items():
            setattr(self, k, v)     # what the handlers read from their server
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(addr)
            self.sock.listen(256)
        except OSError:
            self.sock.close()
            raise
        self.server_address = self.sock.getsockname()
        self.handshake_timeout = handshake_timeout
        self.aserver = None

    def _factory(self):
        self.on_accept()
        return _Connection(self)

    async def start(self):
        self.aserver = await self.loop.create_server(
            self._factory, sock=self.sock, ssl=self.tls_ctx, backlog=256,
            ssl_handshake_timeout=self.handshake_timeout if self.tls_ctx else None)


class HttpLoop:
    """The event loop thread and its listeners. listen() before start()."""

    def __init__(self, verbose=False):
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._exception)
        self.verbose = verbose
        self.listeners = []
        self.thread = None

    def listen(self, addr, handler_class, tls_ctx=None, handshake_timeout=30,
               linger_s=2.0, linger_bytes=16 << 20, on_accept=lambda: None, **attrs):
        """A listener on addr; attrs become attributes of the server object
        the handlers see (self.server)."""
        lst = Listener(self.loop, addr, handler_class, tls_ctx, handshake_timeout,
                       linger_s, linger_bytes, on_accept, attrs)
        self.listeners.append(lst)
        return lst

    def _exception(self, loop, context=None):
        # Failed handshakes and clients that vanish are normal here; they
        # are reported only with --verbose, like the threaded server did.
        if context is None:
            return
        exc = context.get("exception")
        if self.verbose or not isinstance(exc, (OSError, EOFError)):
            sys.stderr.write("ramemu: %s%s\n" % (context.get("message", ""),
                                                 ": %r" % (exc,) if exc else ""))

    def _run(self, started):
        asyncio.set_event_loop(self.loop)
        try:
            for lst in self.listeners:
                self.loop.run_until_complete(lst.start())
        finally:
            started.set()
        self.loop.run_forever()
        for lst in self.listeners:
            if lst.aserver is not None:
                lst.aserver.close()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def start(self):
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), name="http",
                                       daemon=True)
        self.thread.start()
        started.wait()

    def stop(self):
        if self.thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.thread = None
        for lst in self.listeners:
            try:
                lst.sock.close()
            except OSError:
                pass
