"""Loaded by every Python process of an FL test run (PYTHONPATH): refuse non-loopback connections."""

import os

if os.environ.get("HRC_FL_NET_GUARD_LOG"):
    from net_guard import install  # beside this file, which PYTHONPATH puts first

    install(os.environ["HRC_FL_NET_GUARD_LOG"])
