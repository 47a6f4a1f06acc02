"""The command-line tools: ``rellie-train``, ``rellie-evaluate`` and ``rellie-enhance``."""
