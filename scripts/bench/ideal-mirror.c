/*
 * scripts/bench/ideal-mirror — the best a mirror can do for protocol C's
 * 4 KiB write+flush on this machine. A client (fio's role) writes 4 KiB at a
 * random offset, waits, flushes, waits, for SECONDS; a server does pwrite /
 * fdatasync. In `single` mode one server process holds one copy (what
 * nbdkit's file plugin does, without NBD); in `mirror` mode that server also
 * forwards every request over TCP loopback (127.0.0.1 -> 127.0.0.2:PORT) to a
 * second process holding the other copy and answers only after both are
 * done: protocol C's data path with nothing but syscalls — no NBD, no
 * JavaScript, no packet headers. The nbd bench runs both in its 4 KiB
 * write+fsync rounds: mirror against nbdkit is what a mirror with no software
 * overhead scores against that anchor, mirror against single what the second
 * copy itself costs here. Prints one JSON line. Bounded: stops after SECONDS
 * or OPS_MAX operations; every socket read times out; an alarm ends a stuck
 * run.
 *
 * usage: ideal-mirror single|mirror SECONDS FILE_P FILE_S PORT
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BLOCK_BYTES 4096
#define OPS_MAX 1000000
#define SOCKET_TIMEOUT_S 10

struct request {
  char op; /* 'w' write (BLOCK_BYTES follow), 'f' flush, 'q' quit */
  int64_t offset_bytes;
};

static void die(const char *what) {
  fprintf(stderr, "ideal-mirror: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void read_fully(int fd, void *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = read(fd, (char *)buf + done, n - done);
    if (r == 0) errno = ECONNRESET;
    if (r <= 0) die("read");
    done += (size_t)r;
  }
}

static void write_fully(int fd, const void *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = write(fd, (const char *)buf + done, n - done);
    if (r <= 0) die("write");
    done += (size_t)r;
  }
}

static void set_timeout(int fd) {
  struct timeval tv = {.tv_sec = SOCKET_TIMEOUT_S};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0) die("SO_RCVTIMEO");
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Serves requests from `in` on file descriptor `fd`; forwards each to `peer` first when peer >= 0. */
static void serve(int in, int fd, int peer) {
  static char block[BLOCK_BYTES];
  struct request q;
  char ack = 1;
  for (;;) {
    read_fully(in, &q, sizeof q);
    if (q.op == 'q') {
      if (peer >= 0) write_fully(peer, &q, sizeof q);
      return;
    }
    if (q.op == 'w') {
      read_fully(in, block, BLOCK_BYTES);
      if (peer >= 0) {
        write_fully(peer, &q, sizeof q);
        write_fully(peer, block, BLOCK_BYTES);
      }
      if (pwrite(fd, block, BLOCK_BYTES, q.offset_bytes) != BLOCK_BYTES) die("pwrite");
    } else {
      if (peer >= 0) write_fully(peer, &q, sizeof q);
      if (fdatasync(fd) != 0) die("fdatasync");
    }
    if (peer >= 0) read_fully(peer, &ack, 1);
    write_fully(in, &ack, 1);
  }
}

static int open_file(const char *path, int64_t *blocks) {
  int fd = open(path, O_RDWR);
  if (fd < 0) die(path);
  struct stat st;
  if (fstat(fd, &st) != 0) die("fstat");
  *blocks = st.st_size / BLOCK_BYTES;
  if (*blocks < 1) {
    fprintf(stderr, "ideal-mirror: %s is smaller than one block\n", path);
    exit(1);
  }
  return fd;
}

int main(int argc, char **argv) {
  if (argc != 6 || (strcmp(argv[1], "single") != 0 && strcmp(argv[1], "mirror") != 0)) {
    fprintf(stderr, "usage: ideal-mirror single|mirror SECONDS FILE_P FILE_S PORT\n");
    return 2;
  }
  const int mirror = strcmp(argv[1], "mirror") == 0;
  const double seconds = atof(argv[2]);
  const int port = atoi(argv[5]);
  if (seconds <= 0 || seconds > 600 || port <= 0 || port > 65535) {
    fprintf(stderr, "ideal-mirror: SECONDS must be in (0, 600] and PORT in [1, 65535]\n");
    return 2;
  }
  alarm((unsigned)seconds + 60); /* a stuck client ends; its servers then read EOF (or time out) and exit */
  int64_t blocks = 0;
  int client_pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, client_pair) != 0) die("socketpair");
  int peer = -1;
  const int one = 1;
  if (mirror) {
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0) die("socket");
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in secondary = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.2", &secondary.sin_addr);
    if (bind(ls, (struct sockaddr *)&secondary, sizeof secondary) != 0 || listen(ls, 1) != 0) die("bind 127.0.0.2");
    pid_t s = fork();
    if (s < 0) die("fork");
    if (s == 0) {
      int conn = accept(ls, NULL, NULL);
      if (conn < 0) die("accept");
      setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      set_timeout(conn);
      int64_t unused;
      serve(conn, open_file(argv[4], &unused), -1);
      _exit(0);
    }
    close(ls);
    peer = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in primary = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &primary.sin_addr);
    if (peer < 0 || bind(peer, (struct sockaddr *)&primary, sizeof primary) != 0) die("bind 127.0.0.1");
    if (connect(peer, (struct sockaddr *)&secondary, sizeof secondary) != 0) die("connect");
    setsockopt(peer, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_timeout(peer);
  }
  int pfd = open_file(argv[3], &blocks);
  pid_t p = fork();
  if (p < 0) die("fork");
  if (p == 0) {
    close(client_pair[0]);
    set_timeout(client_pair[1]);
    serve(client_pair[1], pfd, peer);
    _exit(0);
  }
  close(client_pair[1]);
  close(pfd);
  if (peer >= 0) close(peer);
  set_timeout(client_pair[0]);

  static char block[BLOCK_BYTES];
  memset(block, 0x5a, sizeof block);
  unsigned seed = (unsigned)getpid();
  struct request q;
  char ack;
  long ops = 0;
  const double start = now_s();
  double end = start;
  while (ops < OPS_MAX && (end = now_s()) - start < seconds) {
    q.op = 'w';
    q.offset_bytes = (int64_t)(rand_r(&seed) % blocks) * BLOCK_BYTES;
    write_fully(client_pair[0], &q, sizeof q);
    write_fully(client_pair[0], block, BLOCK_BYTES);
    read_fully(client_pair[0], &ack, 1);
    q.op = 'f';
    write_fully(client_pair[0], &q, sizeof q);
    read_fully(client_pair[0], &ack, 1);
    ops++;
  }
  q.op = 'q';
  write_fully(client_pair[0], &q, sizeof q);
  int status = 0;
  int failed = 0;
  while (wait(&status) > 0) failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  if (failed) {
    fprintf(stderr, "ideal-mirror: a server process failed\n");
    return 1;
  }
  const double elapsed = end - start;
  printf("{\"mode\":\"%s\",\"ops\":%ld,\"seconds\":%.6f,\"iops\":%.1f}\n", argv[1], ops, elapsed, ops / elapsed);
  return 0;
}
