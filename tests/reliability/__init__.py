"""The reliability suite: the sender and the token store under faults, over real loopback servers.

Every test here runs a bounded stream of sends (a fixed count, and a time budget that fails the test rather
than letting it hang) against the Graph sandbox (``sender.sandbox``), with the token in a real OpenBao behind
the TCP fault proxy (``tests.servers.faultproxy``), and checks at the sandbox that every message arrived
exactly once. Tokens and store credentials are canaries: the session-wide log scan of ``tests/conftest.py``
and the checks of exception texts and CLI output here look for them.
"""
