"""A CPython workload for stasis' end-to-end tests: state in memory, served on a unix socket.

Usage: counter.py SOCKET. Builds a table of 200000 numbers and its checksum, listens on SOCKET
and prints READY. Each connection carries one line and gets one line back, then the server
closes it: `add N` adds N to a running total and answers the total; `state` answers the
table's checksum (computed again from memory), the number of queries and the pid; `verify`
checks the table against the checksum taken at start and answers PASS or FAIL: ..., prints the
same on stdout and exits (0 on PASS).
"""

import hashlib
import os
import socket
import sys


def checksum(table):
    return hashlib.sha256(repr(table).encode()).hexdigest()[:16]


def main():
    path = sys.argv[1]
    table = {i: (i * i * 2654435761) % 1000003 for i in range(200000)}
    at_start = checksum(table)
    total = 0
    queries = 0
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    print("READY", flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            line = conn.makefile().readline().strip()
            queries += 1
            if line.startswith("add "):
                total += int(line[4:])
                reply = str(total)
            elif line == "state":
                reply = f"{checksum(table)} {queries} {os.getpid()}"
            elif line == "verify":
                now = checksum(table)
                reply = "PASS" if now == at_start else f"FAIL: table checksum {now}, was {at_start}"
                conn.sendall((reply + "\n").encode())
                print(reply, flush=True)
                sys.exit(0 if reply == "PASS" else 1)
            else:
                reply = f"FAIL: unknown request {line!r}"
            conn.sendall((reply + "\n").encode())


if __name__ == "__main__":
    main()
