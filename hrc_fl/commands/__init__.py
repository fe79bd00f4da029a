"""Subcommands of ``hrc-fl``: one module each, discovered by :mod:`hrc_fl.cli`.

A command module defines ``NAME`` (str), ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Keep imports of heavy libraries (torch, rclpy, mediapipe) inside ``run`` so
``hrc-fl --help`` stays fast.
"""
