"""The application: wires the pure core to its edges.

Owns: the poll cycle (``poll``), the outbox drain loop (``deliver``), the daemon and its
scheduler (``daemon``), hot reload (``reload``), metrics (``metrics``), the command line
(``cli/``) and the web app (``web/``).
May import everything below it; nothing imports ``monitor.app``.
"""
