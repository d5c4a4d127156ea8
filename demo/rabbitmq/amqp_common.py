"""demo/rabbitmq/amqp_common — what the publisher, consumer and checker share:
the two durable queues (one quorum, one classic), the broker address (the
node's loopback: `guest` may log in only there) and the id format
`RUN:QUEUE:SEQ` carried in every message body and record line."""
import pika

HOST = "127.0.0.1"
PORT = 5672
# name -> queue arguments; both durable
QUEUES = {
    "demo.quorum": {"x-queue-type": "quorum"},
    "demo.classic": {"x-queue-type": "classic"},
}
CONNECT_TIMEOUT_S = 5


def connect():
    """One blocking connection to the broker on this node's loopback, no retries."""
    params = pika.ConnectionParameters(
        host=HOST, port=PORT, credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=CONNECT_TIMEOUT_S,
        blocked_connection_timeout=30, heartbeat=0)
    return pika.BlockingConnection(params)


def declare(channel):
    """Declares both durable queues (idempotent)."""
    for name, arguments in QUEUES.items():
        channel.queue_declare(queue=name, durable=True, arguments=arguments)


def message_id(run, queue, seq):
    return f"{run}:{queue}:{seq}"


def parse_id(text):
    """`RUN:QUEUE:SEQ` -> (run, queue, seq); None for anything else."""
    parts = text.strip().split(":")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])
