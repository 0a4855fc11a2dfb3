#!/usr/bin/env python3
"""Rolling restarts under load: does any request through nginx fail while a replica drains?

    rolling-restart.py --binary ../.build/release/fusion-gateway [--rounds 20] [--clients 16]

Each round starts two gateway replicas (simulated models, `drain_delay_ms: 200`) behind nginx
as docs/deploy.md configures it (round robin, no upstream keep-alive, `proxy_next_upstream error
timeout`), has CLIENTS threads post non-streamed chat completions through nginx without pause
for two seconds, and sends SIGTERM to one replica 0.7 s in. It prints what every request got
(status or exception) per round, and nginx's errors for a round with any failure; it exits 1 if
any request was not answered 200.

A request lost on the way shows as a 502 from nginx: "recv() failed (104: Connection reset by
peer)" (a connection reset by the closing listener) or "upstream prematurely closed connection"
(a connection closed before its answer went out).
"""
import argparse, http.client, json, os, shutil, signal, socket, subprocess, tempfile, threading, time

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--binary", required=True)
parser.add_argument("--rounds", type=int, default=20)
parser.add_argument("--clients", type=int, default=16)
parser.add_argument("--nginx", default="/usr/sbin/nginx")
args = parser.parse_args()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on port {port}")


NGINX_CONFIG = """daemon off; master_process on; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/t/b; proxy_temp_path {d}/t/p; fastcgi_temp_path {d}/t/f; uwsgi_temp_path {d}/t/u; scgi_temp_path {d}/t/s;
  upstream fusion_gateway {{ {servers} }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://fusion_gateway; proxy_http_version 1.1;
      proxy_set_header Host $http_host; proxy_set_header Connection "";
      proxy_buffering off; proxy_request_buffering off; proxy_read_timeout 300s;
      proxy_next_upstream error timeout;
    }}
  }}
}}
"""

BODY = json.dumps({"model": "sim/normal", "stream": False, "messages": [{"role": "user", "content": "hi"}]})


def run_round():
    directory = tempfile.mkdtemp(prefix="rolling-restart-")
    config = os.path.join(directory, "gateway.yaml")
    with open(config, "w") as file:
        file.write("simulated_models: true\nserver:\n  drain_delay_ms: 200\n  shutdown_grace_ms: 5000\n")
    ports = [free_port(), free_port()]
    replicas = [subprocess.Popen([args.binary, "serve", "--port", str(port), "--config", config, "--log-level", "error"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for port in ports]
    nginx = None
    try:
        for port in ports:
            wait_for_port(port)
        nginx_port = free_port()
        os.makedirs(os.path.join(directory, "t"))
        servers = " ".join(f"server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;" for port in ports)
        with open(os.path.join(directory, "nginx.conf"), "w") as file:
            file.write(NGINX_CONFIG.format(d=directory, servers=servers, port=nginx_port))
        nginx = subprocess.Popen([args.nginx, "-c", os.path.join(directory, "nginx.conf"), "-p", directory,
                                  "-e", os.path.join(directory, "error.log")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(nginx_port)
        outcomes, lock = {}, threading.Lock()
        stop_at = time.time() + 2.0

        def client():
            while time.time() < stop_at:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", nginx_port, timeout=10)
                    connection.request("POST", "/v1/chat/completions", BODY, {"Content-Type": "application/json"})
                    outcome = connection.getresponse().status
                    connection.close()
                except Exception as error:  # what the client saw is the result
                    outcome = type(error).__name__
                with lock:
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        time.sleep(0.7)
        replicas[0].send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join()
        exit_status = replicas[0].wait(15)
        errors = []
        if any(outcome != 200 for outcome in outcomes):
            with open(os.path.join(directory, "error.log")) as file:
                errors = [line for line in file.read().splitlines() if "[error]" in line]
        return outcomes, exit_status, errors
    finally:
        if nginx:
            nginx.send_signal(signal.SIGQUIT)
            nginx.wait(5)
        for replica in replicas:
            if replica.poll() is None:
                replica.kill()
                replica.wait()
        shutil.rmtree(directory, ignore_errors=True)


totals = {}
for number in range(args.rounds):
    outcomes, exit_status, errors = run_round()
    for outcome, count in outcomes.items():
        totals[outcome] = totals.get(outcome, 0) + count
    print(f"round {number + 1}: {dict(sorted(outcomes.items(), key=str))}, the drained replica exited {exit_status}", flush=True)
    for line in errors:
        print("  nginx:", line[:240])
print("total:", dict(sorted(totals.items(), key=str)))
raise SystemExit(0 if set(totals) <= {200} else 1)
