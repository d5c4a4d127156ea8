/*
 * native/udrbd-io — starts write-back of a backing file's dirty page-cache
 * range in the background: sync_file_range(SYNC_FILE_RANGE_WRITE), which Node
 * cannot call. src/disk/file-disk issues one such hint per few MiB written
 * through the page cache, so the device writes while more data is still
 * arriving; the fdatasync of the next flush then waits for the tail only
 * instead of for everything written since the last one.
 *
 * It is a hint, never a durability step: no caller waits for it, a hint that
 * finds the queue full is dropped (counted), and a flush still fdatasyncs.
 * sync_file_range can block while the device's request queue is full, so the
 * calls run on one thread of this addon's own, never on the event loop or in
 * libuv's pool (where they would hold up reads and writes).
 *
 * Calls: start(fd, offsetBytes, lengthBytes) -> queued (bool);
 * forget(fd) drops queued hints for fd and waits until none is running on it
 * (call before closing fd, so a reused descriptor number gets no stale hint);
 * stats() -> { queued, completed, dropped, failed, lastErrno }.
 *
 * alignedBuffer(bytes) -> a Buffer whose memory starts on a page boundary
 * (posix_memalign, freed when the Buffer is collected). O_DIRECT needs the
 * memory, not only the file offset, aligned to the device's logical block,
 * and a Node allocation has no alignment guarantee (src/disk/direct-buffers).
 * Buffers of 1 MiB and more get a region of whole 2 MiB huge pages, advised
 * MADV_HUGEPAGE: a direct transfer from 4 KiB pages scattered in physical
 * memory needs one segment per page, and a virtio disk taking 254 segments
 * per request splits every 1 MiB transfer in two (measured: 1 GiB of 1 MiB
 * O_DIRECT writes, 4 threads, 0.27 s from huge pages vs 0.51-0.58 s).
 * alignedBufferStats() -> { hugeAdvised, hugeRefused }.
 *
 * setSocketBuffer(fd, kind, bytes) -> the size the kernel now reports, and
 * getSocketBuffer(fd, kind) -> it, for kind 0 = SO_SNDBUF, 1 = SO_RCVBUF on
 * the peer link's TCP socket (net { sndbuf-size; rcvbuf-size; }), which Node
 * cannot set. DRBD assigns sk_sndbuf / sk_rcvbuf directly; setsockopt doubles
 * what it is given (room for bookkeeping), so half is passed and the socket
 * ends up with the configured size, as DRBD's does. The *FORCE variant is
 * tried first (root may exceed net.core.wmem_max / rmem_max, as the kernel's
 * own assignment does), then the plain one. Errors throw with errno's text.
 *
 * crc32c(uint8Array) -> the Castagnoli CRC (init and final xor ~0, "check"
 * 0xE3069283) of its bytes, with the SSE4.2 crc32 instruction where the CPU
 * has it (about 8 bytes per 3 cycles), else a byte table. net {
 * data-integrity-alg crc32c; } runs it over every replicated write on both
 * nodes; src/util/digest's JavaScript version (about 0.9 GB/s) is the
 * fallback when the addon is missing.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Bounded queue of pending hints; adjacent ranges of one fd coalesce. */
#define QUEUE_MAX 64

typedef struct {
  int fd;
  int64_t offset;
  int64_t length;
} hint_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;   /* hints queued */
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;   /* running hint finished */
static hint_t queue[QUEUE_MAX];
static int queue_head = 0; /* index of the oldest */
static int queue_len = 0;
static int running_fd = -1;
static int thread_started = 0;
static uint64_t n_queued = 0, n_completed = 0, n_dropped = 0, n_failed = 0;
static int last_errno = 0;

static void *writeback_thread(void *arg) {
  (void)arg;
  pthread_mutex_lock(&lock);
  for (;;) {
    while (queue_len == 0) pthread_cond_wait(&wake, &lock);
    hint_t h = queue[queue_head];
    queue_head = (queue_head + 1) % QUEUE_MAX;
    queue_len--;
    running_fd = h.fd;
    pthread_mutex_unlock(&lock);
    int rc = sync_file_range(h.fd, h.offset, h.length, SYNC_FILE_RANGE_WRITE);
    int err = rc == 0 ? 0 : errno;
    pthread_mutex_lock(&lock);
    running_fd = -1;
    if (err == 0) {
      n_completed++;
    } else {
      n_failed++;
      last_errno = err;
    }
    pthread_cond_broadcast(&idle);
  }
  return NULL;
}

#define NAPI_OK(call)                                                 \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "udrbd-io: " #call " failed");      \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static int ensure_thread(void) {
  if (thread_started) return 0;
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &attr, writeback_thread, NULL);
  pthread_attr_destroy(&attr);
  if (rc != 0) return rc;
  thread_started = 1;
  return 0;
}

/* Exactly `count` arguments into argv; otherwise throws `usage` and returns 0. */
static int get_args(napi_env env, napi_callback_info info, size_t count, napi_value *argv, const char *usage) {
  size_t argc = count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != count) {
    napi_throw_type_error(env, NULL, usage);
    return 0;
  }
  return 1;
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "udrbd-io: start(fd, offsetBytes, lengthBytes)")) return NULL;
  int32_t fd;
  int64_t offset, length;
  NAPI_OK(napi_get_value_int32(env, argv[0], &fd));
  NAPI_OK(napi_get_value_int64(env, argv[1], &offset));
  NAPI_OK(napi_get_value_int64(env, argv[2], &length));
  if (fd < 0 || offset < 0 || length < 0) {
    napi_throw_range_error(env, NULL, "udrbd-io: start: fd, offsetBytes and lengthBytes must be >= 0");
    return NULL;
  }
  int queued = 0;
  pthread_mutex_lock(&lock);
  int rc = ensure_thread();
  if (rc == 0) {
    hint_t *last = queue_len > 0 ? &queue[(queue_head + queue_len - 1) % QUEUE_MAX] : NULL;
    if (last != NULL && last->fd == fd && last->length > 0 && length > 0 && offset >= last->offset &&
        offset <= last->offset + last->length) {
      /* Extends the newest pending range of the same fd (a sequential stream). */
      int64_t end = offset + length > last->offset + last->length ? offset + length : last->offset + last->length;
      last->length = end - last->offset;
      queued = 1;
    } else if (queue_len < QUEUE_MAX) {
      queue[(queue_head + queue_len) % QUEUE_MAX] = (hint_t){ fd, offset, length };
      queue_len++;
      queued = 1;
    }
  }
  if (queued) {
    n_queued++;
    pthread_cond_signal(&wake);
  } else {
    n_dropped++;
    if (rc != 0) last_errno = rc;
  }
  pthread_mutex_unlock(&lock);
  napi_value result;
  NAPI_OK(napi_get_boolean(env, queued, &result));
  return result;
}

static napi_value js_forget(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "udrbd-io: forget(fd)")) return NULL;
  int32_t fd;
  NAPI_OK(napi_get_value_int32(env, argv[0], &fd));
  pthread_mutex_lock(&lock);
  /* Compact the ring without fd's entries. */
  hint_t kept[QUEUE_MAX];
  int n = 0;
  for (int i = 0; i < queue_len; i++) {
    hint_t h = queue[(queue_head + i) % QUEUE_MAX];
    if (h.fd != fd) kept[n++] = h;
  }
  memcpy(queue, kept, sizeof(hint_t) * (size_t)n);
  queue_head = 0;
  queue_len = n;
  while (running_fd == fd) pthread_cond_wait(&idle, &lock);
  pthread_mutex_unlock(&lock);
  return NULL;
}

/* Memory of an alignedBuffer: alignment of its first byte, and the largest one handed out. */
#define ALIGNED_BUFFER_ALIGN_BYTES 4096
#define ALIGNED_BUFFER_BYTES_MAX (64 * 1024 * 1024)
/* Buffers at least this big are placed in whole huge pages. */
#define HUGE_BUFFER_BYTES_MIN (1024 * 1024)
#define HUGE_PAGE_BYTES (2 * 1024 * 1024)
static uint64_t n_huge_advised = 0, n_huge_refused = 0; /* event-loop thread only */

static void free_aligned(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static napi_value js_aligned_buffer(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "udrbd-io: alignedBuffer(bytes)")) return NULL;
  int64_t bytes;
  NAPI_OK(napi_get_value_int64(env, argv[0], &bytes));
  if (bytes <= 0 || bytes > ALIGNED_BUFFER_BYTES_MAX) {
    napi_throw_range_error(env, NULL, "udrbd-io: alignedBuffer: bytes must be 1 .. 64 MiB");
    return NULL;
  }
  int huge = bytes >= HUGE_BUFFER_BYTES_MIN;
  size_t align = huge ? HUGE_PAGE_BYTES : ALIGNED_BUFFER_ALIGN_BYTES;
  /* The whole huge pages must belong to this allocation, or THP cannot back them. */
  size_t alloc = huge ? ((size_t)bytes + HUGE_PAGE_BYTES - 1) / HUGE_PAGE_BYTES * HUGE_PAGE_BYTES : (size_t)bytes;
  void *data = NULL;
  int rc = posix_memalign(&data, align, alloc);
  if (rc != 0) {
    napi_throw_error(env, NULL, "udrbd-io: alignedBuffer: out of memory");
    return NULL;
  }
  if (huge) {
    /* Only advice: without THP the buffer is still page-aligned and correct. */
    if (madvise(data, alloc, MADV_HUGEPAGE) == 0) n_huge_advised++;
    else n_huge_refused++;
  }
  napi_value result;
  if (napi_create_external_buffer(env, (size_t)bytes, data, free_aligned, NULL, &result) != napi_ok) {
    free(data);
    napi_throw_error(env, NULL, "udrbd-io: alignedBuffer: napi_create_external_buffer failed");
    return NULL;
  }
  return result;
}

static napi_status set_u64(napi_env env, napi_value obj, const char *name, uint64_t value) {
  napi_value v;
  napi_status s = napi_create_double(env, (double)value, &v);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, obj, name, v);
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj;
  NAPI_OK(napi_create_object(env, &obj));
  pthread_mutex_lock(&lock);
  uint64_t q = n_queued, c = n_completed, d = n_dropped, f = n_failed;
  int e = last_errno;
  pthread_mutex_unlock(&lock);
  NAPI_OK(set_u64(env, obj, "queued", q));
  NAPI_OK(set_u64(env, obj, "completed", c));
  NAPI_OK(set_u64(env, obj, "dropped", d));
  NAPI_OK(set_u64(env, obj, "failed", f));
  NAPI_OK(set_u64(env, obj, "lastErrno", (uint64_t)e));
  return obj;
}

static napi_value js_aligned_buffer_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj;
  NAPI_OK(napi_create_object(env, &obj));
  NAPI_OK(set_u64(env, obj, "hugeAdvised", n_huge_advised));
  NAPI_OK(set_u64(env, obj, "hugeRefused", n_huge_refused));
  return obj;
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[160];
  snprintf(message, sizeof message, "udrbd-io: %s: %s", what, strerror(err));
  napi_throw_error(env, NULL, message);
  return NULL;
}

/* kind 0 = send buffer, 1 = receive buffer; -1 for anything else. */
static int buffer_option(int32_t kind, int force) {
  if (kind == 0) return force ? SO_SNDBUFFORCE : SO_SNDBUF;
  if (kind == 1) return force ? SO_RCVBUFFORCE : SO_RCVBUF;
  return -1;
}

static napi_value js_get_socket_buffer(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv, "udrbd-io: getSocketBuffer(fd, kind)")) return NULL;
  int32_t fd, kind;
  NAPI_OK(napi_get_value_int32(env, argv[0], &fd));
  NAPI_OK(napi_get_value_int32(env, argv[1], &kind));
  int opt = buffer_option(kind, 0);
  if (opt < 0) {
    napi_throw_range_error(env, NULL, "udrbd-io: kind is 0 (SO_SNDBUF) or 1 (SO_RCVBUF)");
    return NULL;
  }
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, opt, &value, &len) != 0) return throw_errno(env, "getsockopt", errno);
  napi_value result;
  NAPI_OK(napi_create_int32(env, value, &result));
  return result;
}

static napi_value js_set_socket_buffer(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv, "udrbd-io: setSocketBuffer(fd, kind, bytes)")) return NULL;
  int32_t fd, kind, bytes;
  NAPI_OK(napi_get_value_int32(env, argv[0], &fd));
  NAPI_OK(napi_get_value_int32(env, argv[1], &kind));
  NAPI_OK(napi_get_value_int32(env, argv[2], &bytes));
  if (buffer_option(kind, 0) < 0 || bytes <= 0) {
    napi_throw_range_error(env, NULL, "udrbd-io: setSocketBuffer needs kind 0 or 1 and bytes > 0");
    return NULL;
  }
  int half = (bytes + 1) / 2;
  if (setsockopt(fd, SOL_SOCKET, buffer_option(kind, 1), &half, sizeof half) != 0 &&
      setsockopt(fd, SOL_SOCKET, buffer_option(kind, 0), &half, sizeof half) != 0) {
    return throw_errno(env, "setsockopt", errno);
  }
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, SOL_SOCKET, buffer_option(kind, 0), &value, &len) != 0) return throw_errno(env, "getsockopt", errno);
  napi_value result;
  NAPI_OK(napi_create_int32(env, value, &result));
  return result;
}

/* Reflected Castagnoli polynomial; the table is filled on first use (software path only). */
#define CRC32C_POLY_REFLECTED 0x82F63B78u
static uint32_t crc32c_table[256];
static int crc32c_table_ready = 0;

static uint32_t crc32c_soft(uint32_t crc, const uint8_t *p, size_t n) {
  if (!crc32c_table_ready) {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
      crc32c_table[i] = c;
    }
    crc32c_table_ready = 1;
  }
  while (n--) crc = crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t n) {
  while (n > 0 && ((uintptr_t)p & 7) != 0) {
    crc = __builtin_ia32_crc32qi(crc, *p++);
    n--;
  }
  uint64_t c = crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    memcpy(&word, p, sizeof word);
    c = __builtin_ia32_crc32di(c, word);
  }
  crc = (uint32_t)c;
  while (n--) crc = __builtin_ia32_crc32qi(crc, *p++);
  return crc;
}
#endif

static napi_value js_crc32c(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv, "udrbd-io: crc32c(uint8Array)")) return NULL;
  bool is_typed = false;
  NAPI_OK(napi_is_typedarray(env, argv[0], &is_typed));
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (is_typed) NAPI_OK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL));
  if (!is_typed || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "udrbd-io: crc32c needs a Uint8Array (a Buffer)");
    return NULL;
  }
  uint32_t crc = 0xFFFFFFFFu;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) crc = crc32c_sse42(crc, data, length);
  else crc = crc32c_soft(crc, data, length);
#else
  crc = crc32c_soft(crc, data, length);
#endif
  napi_value result;
  NAPI_OK(napi_create_uint32(env, crc ^ 0xFFFFFFFFu, &result));
  return result;
}

static napi_value init_module(napi_env env, napi_value exports) {
  napi_value fn;
  NAPI_OK(napi_create_function(env, "crc32c", NAPI_AUTO_LENGTH, js_crc32c, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "crc32c", fn));
  NAPI_OK(napi_create_function(env, "start", NAPI_AUTO_LENGTH, js_start, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "start", fn));
  NAPI_OK(napi_create_function(env, "forget", NAPI_AUTO_LENGTH, js_forget, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "forget", fn));
  NAPI_OK(napi_create_function(env, "stats", NAPI_AUTO_LENGTH, js_stats, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "stats", fn));
  NAPI_OK(napi_create_function(env, "alignedBuffer", NAPI_AUTO_LENGTH, js_aligned_buffer, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "alignedBuffer", fn));
  NAPI_OK(napi_create_function(env, "alignedBufferStats", NAPI_AUTO_LENGTH, js_aligned_buffer_stats, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "alignedBufferStats", fn));
  NAPI_OK(napi_create_function(env, "setSocketBuffer", NAPI_AUTO_LENGTH, js_set_socket_buffer, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "setSocketBuffer", fn));
  NAPI_OK(napi_create_function(env, "getSocketBuffer", NAPI_AUTO_LENGTH, js_get_socket_buffer, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "getSocketBuffer", fn));
  NAPI_OK(napi_create_int32(env, ALIGNED_BUFFER_ALIGN_BYTES, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "alignedBufferAlignBytes", fn));
  napi_value n;
  NAPI_OK(napi_create_int32(env, QUEUE_MAX, &n));
  NAPI_OK(napi_set_named_property(env, exports, "queueMax", n));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
