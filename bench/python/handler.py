"""The Python side of `make bench`: what a boto3 pipeline step runs on python3.11.

BENCH_BOTO3_CLIENTS names the boto3 clients to create at import (init), comma separated: the
same clients the Rust function of the same name creates before it asks for work. "-" creates
none and does not import boto3 (the Python runtime's own floor).
"""

import os

_CLIENTS = os.environ.get("BENCH_BOTO3_CLIENTS", "-")
clients = {}
if _CLIENTS != "-":
    import boto3

    for name in filter(None, _CLIENTS.split(",")):
        clients[name] = boto3.client(name)


def handler(event, context):
    return event
