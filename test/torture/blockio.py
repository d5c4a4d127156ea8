# test/torture/blockio.py — the torture's witness on a node's device (O_DIRECT):
#   write DEV LOG WRITER SEQ0 SECONDS BLOCKS SEED  stamps random blocks with
#       (writer, sequence); logs "S block writer seq" before each write and
#       "A block writer seq" only after its pwrite and fsync (the flush)
#       both returned; stops at the first error or after SECONDS.
#   read DEV BLOCKS  prints one line per block: "block writer seq", "block zero"
#       or "block bad" (not a stamp this witness wrote, or torn).
# LOG is on the host (the node's /tmp), so it survives the node's power cut.
import hashlib, mmap, os, random, struct, sys, time

BLOCK_BYTES = 4096
MAGIC = b'UTORTURE'
HEADER = struct.Struct('<8sIIQ')

def stamp(block, writer, seq):
    head = HEADER.pack(MAGIC, block, writer, seq)
    fill = hashlib.sha256(head).digest() * (BLOCK_BYTES // 32)
    return head + fill[len(head):BLOCK_BYTES]

def write(dev, log_path, writer, seq0, seconds, blocks, seed):
    rng = random.Random(seed)
    buf = mmap.mmap(-1, BLOCK_BYTES)
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    log = open(log_path, 'a', buffering=1)
    deadline = time.monotonic() + seconds
    seq = seq0
    acked = 0
    try:
        while time.monotonic() < deadline:
            block = rng.randrange(blocks)
            seq += 1
            buf.seek(0); buf.write(stamp(block, writer, seq))
            log.write(f'S {block} {writer} {seq}\n'); log.flush()
            if os.pwritev(fd, [buf], block * BLOCK_BYTES) != BLOCK_BYTES:
                raise OSError('short write')
            os.fsync(fd)
            log.write(f'A {block} {writer} {seq}\n'); log.flush()
            acked += 1
        print(f'acked {acked}')
    except OSError as err:
        print(f'acked {acked}, stopped: {err}')
    finally:
        log.close()

def read(dev, blocks):
    buf = mmap.mmap(-1, BLOCK_BYTES)
    fd = os.open(dev, os.O_RDONLY | os.O_DIRECT)
    zero = bytes(BLOCK_BYTES)
    out = []
    for block in range(blocks):
        if os.preadv(fd, [buf], block * BLOCK_BYTES) != BLOCK_BYTES:
            raise OSError(f'short read of block {block}')
        data = bytes(buf)
        if data == zero:
            out.append(f'{block} zero')
            continue
        magic, b, w, s = HEADER.unpack_from(data)
        if magic != MAGIC or b != block or data != stamp(b, w, s):
            out.append(f'{block} bad')
        else:
            out.append(f'{block} {w} {s}')
    sys.stdout.write('\n'.join(out) + '\n')

if __name__ == '__main__':
    a = sys.argv[1:]
    if a[0] == 'write':
        write(a[1], a[2], int(a[3]), int(a[4]), float(a[5]), int(a[6]), int(a[7]))
    elif a[0] == 'read':
        read(a[1], int(a[2]))
    else:
        sys.exit(f'usage: blockio.py write|read ...')
