#!/usr/bin/python3
"""demo/rabbitmq/checker — compares what the broker confirmed (the
publisher's record) with what the consumer drained, for one run id, and prints
per queue: confirmed, present (confirmed ids drained at least once), lost
(confirmed, never drained), duplicated (drained more than once), unconfirmed
(drained, never confirmed: in flight when the broker died — not a loss), and
then one JSON line. Ids of other runs in the drain are counted as `other`.

  checker.py --run ID --record FILE --drained FILE [--json]"""
import argparse
import json
import sys
from collections import Counter

from amqp_common import QUEUES, parse_id


def read_ids(path, run):
    ids = Counter()
    other = Counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            parsed = parse_id(line)
            if parsed is None:
                continue
            if parsed[0] == run:
                ids[(parsed[1], parsed[2])] += 1
            else:
                other[parsed[1]] += 1
    return ids, other


def check(run, record_path, drained_path):
    confirmed, _ = read_ids(record_path, run)
    drained, other = read_ids(drained_path, run)
    result = {}
    for queue in QUEUES:
        conf = {seq for (q, seq) in confirmed if q == queue}
        got = {seq: n for (q, seq), n in drained.items() if q == queue}
        result[queue] = {
            "confirmed": len(conf),
            "present": len(conf & got.keys()),
            "lost": len(conf - got.keys()),
            "duplicated": sum(1 for n in got.values() if n > 1),
            "unconfirmed": len(got.keys() - conf),
            "other": other[queue],
            "lostIds": sorted(conf - got.keys())[:20],
        }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--drained", required=True)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    result = check(args.run, args.record, args.drained)
    if not args.json:
        print(f"{'queue':<14}{'confirmed':>10}{'present':>9}{'lost':>6}{'duplicated':>11}{'unconfirmed':>12}")
        for queue, r in result.items():
            print(f"{queue:<14}{r['confirmed']:>10}{r['present']:>9}{r['lost']:>6}{r['duplicated']:>11}{r['unconfirmed']:>12}")
    print(json.dumps({"run": args.run, "queues": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
