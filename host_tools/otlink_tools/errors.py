"""The one error type every CLI command raises; the CLI prints `otlink: <message>`, exit 1."""


class CommandError(Exception):
    pass
