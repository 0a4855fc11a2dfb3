#!/usr/bin/env python3
"""Resident memory per open stream: the gateway and nginx, each started afresh, in one run.

    stream-memory.py --binary ../.build/release/fusion-gateway [--streams 1000] [--rounds 2]

Starts the mock upstream once, then for every round and every path a fresh proxy in front of it
(the gateway with two loops; nginx with two workers, `proxy_buffering off`, a keep-alive upstream,
when /usr/sbin/nginx exists), opens STREAMS slow streams (one delta every 500 ms), waits until
each has its second event, and reads the proxy's RSS (nginx: master and workers summed).
Per stream = (RSS with the streams open - the fresh process's idle RSS) / STREAMS. Paths
alternate, so both see the same machine state.

With --heaptrack FILE, the gateway of the first round runs under heaptrack instead (its RSS is
then not reported); `heap-by-owner.py FILE STREAMS` splits its peak heap by owner.
"""
import argparse, json, os, select, signal, socket, subprocess, tempfile, time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--binary", required=True)
parser.add_argument("--streams", type=int, default=1000)
parser.add_argument("--rounds", type=int, default=2)
parser.add_argument("--heaptrack", help="record the first round's gateway with heaptrack to this file (.zst)")
args = parser.parse_args()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_listening(port, process):
    for _ in range(300):
        if process.poll() is not None:
            raise SystemExit(f"exited early: {process.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"not listening on {port}: {process.args}")


def rss_kib(pid):
    """The process's RSS plus its children's (nginx's workers)."""
    def one(pid):
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
    total = one(pid)
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            total += sum(one(int(child)) for child in children.read().split())
    except FileNotFoundError:
        pass
    return total


def hold_streams(port, model, pid):
    """Opens the streams, waits for each one's second event; returns KiB per stream."""
    idle = rss_kib(pid) if pid else 0
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "hello there"}]}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    connections = []
    for index in range(args.streams):
        connection = socket.create_connection(("127.0.0.1", port))
        connection.sendall(request)
        connection.setblocking(False)
        connections.append(connection)
        if index % 50 == 49:
            time.sleep(0.02)  # a ramp, not a burst the accept queue would drop
    events = {connection: 0 for connection in connections}
    waiting = set(connections)
    deadline = time.time() + 60
    while waiting and time.time() < deadline:
        for connection in select.select(list(waiting)[:1000], [], [], 1)[0]:
            events[connection] += connection.recv(65536).count(b"data: ")
            if events[connection] >= 2:
                waiting.discard(connection)
    if waiting:
        raise SystemExit(f"{len(waiting)} streams never got two events")
    time.sleep(0.3)
    full = rss_kib(pid) if pid else 0
    for connection in connections:
        connection.close()
    return (full - idle) / args.streams


def gateway(mock_port, workdir, heaptrack=None):
    port = free_port()
    config = os.path.join(workdir, "gateway.yaml")
    with open(config, "w") as file:
        file.write(f"providers:\n  mock: {{base_url: 'http://127.0.0.1:{mock_port}/v1'}}\n")
    command = [args.binary, "serve", "--port", str(port), "--config", config, "--loops", "2", "--log-level", "error"]
    if heaptrack:
        command = ["heaptrack", "-o", heaptrack.removesuffix(".zst")] + command
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, process)
    return process, port, "mock/paced:pace_ms=500:deltas=40"


def nginx(mock_port, workdir):
    port = free_port()
    config = os.path.join(workdir, "nginx.conf")
    with open(config, "w") as file:
        file.write(f"""worker_processes 2; daemon off; pid {workdir}/nginx.pid; error_log {workdir}/nginx-error.log;
events {{ worker_connections 20000; }}
http {{ access_log off;
  upstream mock {{ server 127.0.0.1:{mock_port}; keepalive 64; }}
  server {{ listen 127.0.0.1:{port};
    location / {{ proxy_pass http://mock; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }} }} }}
""")
    process = subprocess.Popen(["/usr/sbin/nginx", "-c", config, "-p", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, process)
    return process, port, "paced:pace_ms=500:deltas=40"


def stop(process):
    if process.args[0] == "heaptrack":
        # heaptrack's wrapper waits for the gateway: stop the gateway, and the wrapper writes the file.
        with open(f"/proc/{process.pid}/task/{process.pid}/children") as children:
            for child in children.read().split():
                os.kill(int(child), signal.SIGINT)
        process.wait(timeout=300)
        return
    process.send_signal(signal.SIGINT if process.args[0] != "/usr/sbin/nginx" else signal.SIGQUIT)
    process.wait(timeout=60)


def main():
    with tempfile.TemporaryDirectory() as workdir:
        mock_port = free_port()
        mock = subprocess.Popen([args.binary, "mock-upstream", "--port", str(mock_port), "--log-level", "error"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(mock_port, mock)
        try:
            for round in range(args.rounds):
                paths = [("gateway", gateway)] + ([("nginx", nginx)] if os.path.exists("/usr/sbin/nginx") else [])
                for name, start in paths:
                    traced = args.heaptrack if name == "gateway" and round == 0 else None
                    process, port, model = start(mock_port, workdir, traced) if name == "gateway" else start(mock_port, workdir)
                    try:
                        if traced:
                            time.sleep(2)  # heaptrack's own start-up
                            hold_streams(port, model, None)
                            print(f"round {round + 1}: gateway under heaptrack, {args.streams} streams held: {traced}")
                        else:
                            print(f"round {round + 1}: {name:8} {hold_streams(port, model, process.pid):5.1f} KiB per open stream "
                                  f"({args.streams} streams)", flush=True)
                    finally:
                        stop(process)
        finally:
            mock.send_signal(signal.SIGINT)
            mock.wait(timeout=30)


main()
