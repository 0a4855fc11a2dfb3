"""What the benchmark scripts share on loopback: a free port, waiting for a listener, and one
streamed chat completion (or deliberation) sent and read to its end."""
import socket, sys, time

# latency-bench --fusion's deliberation: the config's `fusion` preset (three members, the judge,
# the outer model's two calls).
FUSION_BODY = (b'{"model":"fusion","stream":true,"stream_options":{"include_usage":true},'
               b'"messages":[{"role":"user","content":"Should cities ban cars from their centres?"}]}')


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(port, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"nothing listening on port {port} after {seconds} s")


def stream(port, body):
    """POSTs `body` to /v1/chat/completions and reads the chunked answer to its end; exits unless
    it ended with `[DONE]`."""
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(head + body)
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
    if b"data: [DONE]" not in received:
        sys.exit(f"an incomplete answer: {received[-300:]!r}")
