"""Ports picked for the servers the dev cluster and the tests start: outside the kernel's
ephemeral range (no outgoing connection or bind to port 0 can take one before its server
binds it), free when picked, and never the same twice in a process."""

from __future__ import annotations

import socket
from pathlib import Path

from dev_cluster.ports import PICK_RANGE, ephemeral_range, pick_port


def test_picked_ports_are_outside_the_kernels_range_and_distinct() -> None:
    kernel = ephemeral_range()
    picked = [pick_port() for _ in range(50)]
    assert len(set(picked)) == len(picked)
    assert not [p for p in picked if p in kernel]
    assert all(p in PICK_RANGE for p in picked)


def test_a_picked_port_can_be_bound() -> None:
    port = pick_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_a_port_held_by_a_listener_is_never_picked() -> None:
    window = PICK_RANGE[:200]
    kernel = range(window.stop, 65536)  # here only the window is outside the kernel's range
    held: list[socket.socket] = []
    try:
        for port in window[::2]:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:  # someone else holds it: just as good
                sock.close()
                continue
            sock.listen()
            held.append(sock)
        taken = {s.getsockname()[1] for s in held}
        picked = [pick_port(kernel_range=kernel) for _ in range(20)]
        assert all(p in window and p not in taken for p in picked), (picked, taken)
    finally:
        for sock in held:
            sock.close()


def test_the_kernels_range_is_read_from_proc_or_defaults(tmp_path: Path) -> None:
    custom = tmp_path / "ip_local_port_range"
    custom.write_text("20000\t20999\n")
    assert ephemeral_range(custom) == range(20000, 21000)
    assert ephemeral_range(tmp_path / "missing") == range(32768, 61000)
