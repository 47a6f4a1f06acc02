#!/usr/bin/env python
"""Train a ReLLIE agent on LowLight-v0 with stable-baselines3 (``rellie-train``).

The code lives in :mod:`agents.cli.train`; ``python train_sb3.py --help`` lists the options.
"""
import sys

from agents.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
