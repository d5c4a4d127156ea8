#!/usr/bin/python3
"""demo/rabbitmq/consumer — drains both demo queues: every message is acked
only after its id was appended to the output file (and the file fsynced), so
the file holds each id as often as the broker delivered it. It stops on a
queue when nothing arrives for --idle-s seconds, and prints one JSON line
with the count per queue.

  consumer.py --out FILE [--idle-s 2]"""
import argparse
import json
import os
import sys

from amqp_common import QUEUES, connect

PREFETCH = 500
DRAIN_MAX = 2_000_000


def drain(channel, queue, out, idle_s):
    count = 0
    pending_tag = None
    channel.basic_qos(prefetch_count=PREFETCH)
    for method, _props, body in channel.consume(queue, auto_ack=False, inactivity_timeout=idle_s):
        if method is None:
            break
        mid = body.split(b" ", 1)[0]
        os.write(out, mid + b"\n")
        count += 1
        pending_tag = method.delivery_tag
        if count % PREFETCH == 0:
            os.fsync(out)
            channel.basic_ack(delivery_tag=pending_tag, multiple=True)
            pending_tag = None
        if count >= DRAIN_MAX:
            raise SystemExit(f"consumer: more than {DRAIN_MAX} messages in {queue}; stopping")
    os.fsync(out)
    if pending_tag is not None:
        channel.basic_ack(delivery_tag=pending_tag, multiple=True)
    channel.cancel()
    return count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--idle-s", type=float, default=2.0)
    args = parser.parse_args()
    out = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    conn = connect()
    channel = conn.channel()
    counts = {}
    for queue in QUEUES:
        # passive: a queue missing after a failover is a finding, not something to re-create
        channel.queue_declare(queue=queue, passive=True)
        counts[queue] = drain(channel, queue, out, args.idle_s)
    conn.close()
    os.close(out)
    print(json.dumps({"drained": counts}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
