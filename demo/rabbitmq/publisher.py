#!/usr/bin/python3
"""demo/rabbitmq/publisher — publishes persistent messages with publisher
confirms, alternating between the durable quorum queue and the durable classic
queue, and appends the id of every confirmed message to a record file,
fsynced before the next publish (the record lives outside the replicated disk,
so it is the truth about what the broker confirmed). Every 4th message is
padded past the classic queue's index-embedding limit (4096 bytes), so both
of its paths (queue index, message store) are exercised.

  publisher.py declare
  publisher.py publish --run ID --record FILE [--count N] [--duration-s S]

It stops at N messages, after S seconds, or when the connection is lost (the
broker died or stopped); then it prints one JSON summary line and exits 0.
A nack or a connection error that is not a loss of the broker exits 1."""
import argparse
import json
import os
import sys
import time

import pika
from pika.exceptions import AMQPConnectionError, ChannelClosed, NackError, StreamLostError, UnroutableError, ConnectionClosed

from amqp_common import QUEUES, connect, declare, message_id

LARGE_EVERY = 4
LARGE_BODY_BYTES = 6000   # > queue_index_embed_msgs_below (4096): goes to the message store
COUNT_MAX = 1_000_000
STARTED_MARK = "publishing"


def publish(args):
    record = os.open(args.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.fsync(record)
    dir_fd = os.open(os.path.dirname(os.path.abspath(args.record)), os.O_RDONLY)
    os.fsync(dir_fd)
    os.close(dir_fd)
    conn = connect()
    channel = conn.channel()
    declare(channel)
    channel.confirm_delivery()
    queues = list(QUEUES)
    confirmed = {q: 0 for q in queues}
    nacked = 0
    stop_reason = "count"
    deadline = time.monotonic() + args.duration_s
    seq = 0
    print(STARTED_MARK, flush=True)
    try:
        while seq < args.count:
            if time.monotonic() > deadline:
                stop_reason = "duration"
                break
            queue = queues[seq % len(queues)]
            mid = message_id(args.run, queue, seq)
            body = mid.encode()
            if seq % LARGE_EVERY == LARGE_EVERY - 1:
                body = body + b" " + b"x" * (LARGE_BODY_BYTES - len(body) - 1)
            try:
                channel.basic_publish(exchange="", routing_key=queue, body=body, mandatory=True,
                                      properties=pika.BasicProperties(delivery_mode=2, message_id=mid))
            except (NackError, UnroutableError):
                nacked += 1
                seq += 1
                continue
            # The broker confirmed it: make that durable before the next publish.
            os.write(record, (mid + "\n").encode())
            os.fsync(record)
            confirmed[queue] += 1
            seq += 1
    except (StreamLostError, ConnectionClosed, AMQPConnectionError, ChannelClosed, ConnectionResetError, OSError) as err:
        stop_reason = f"connection lost: {type(err).__name__}"
    finally:
        os.close(record)
        try:
            conn.close()
        except Exception:  # the connection is already gone after a broker loss
            pass
    print(json.dumps({"run": args.run, "published": seq, "confirmed": confirmed, "nacked": nacked, "stop": stop_reason}), flush=True)
    return 1 if nacked else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("declare", help="declare both durable queues and exit")
    p = sub.add_parser("publish", help="publish until count, duration or broker loss")
    p.add_argument("--run", required=True, help="run id, part of every message id (no ':')")
    p.add_argument("--record", required=True, help="file the confirmed ids are appended to (fsynced)")
    p.add_argument("--count", type=int, default=COUNT_MAX)
    p.add_argument("--duration-s", type=float, default=600.0)
    args = parser.parse_args()
    if args.verb == "declare":
        conn = connect()
        declare(conn.channel())
        conn.close()
        return 0
    if ":" in args.run:
        parser.error("--run must not contain ':'")
    if not 0 < args.count <= COUNT_MAX:
        parser.error(f"--count must be 1..{COUNT_MAX}")
    return publish(args)


if __name__ == "__main__":
    sys.exit(main())
