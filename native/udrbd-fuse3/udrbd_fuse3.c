/*
 * native/udrbd-fuse3 — a minimal Node-API addon serving a one-file FUSE
 * filesystem with libfuse 3's low-level API, for src/frontend/fuse. It exists
 * because fuse-native bundles libfuse 2, which can negotiate neither
 * FUSE_ASYNC_DIO (so a loop device on the file has one request in flight)
 * nor FUSE_MAX_PAGES (so requests stop at 128 KiB). libfuse 3 does both.
 *
 * What it owns: mount/unmount, the namespace (root directory with the single
 * file `volume` of a fixed size; everything that would change it is refused
 * with EPERM), and handing read/write/flush/fsync of the file to JavaScript.
 * It knows nothing of block devices or replication: JavaScript answers each
 * I/O request with reply(handle, worker, bytesOrNegativeErrno).
 *
 * Threading: UDRBD_FUSE3_WORKERS threads, started at mount, each read
 * requests from /dev/fuse into its own receive buffer and hand I/O to the JS
 * thread through a threadsafe function, then wait on their own semaphore
 * until JavaScript replies. Each worker owns two buffers allocated once: the
 * receive buffer (a write's data stays in it, where the kernel put it) and a
 * read buffer JavaScript fills. Both are handed to JavaScript once, at mount,
 * as Buffers (buffers(handle)); a request then names a buffer by index and
 * offset, so no memory is allocated or wrapped per request (a fresh external
 * Buffer per 1 MiB write made V8 count 1 MiB of external memory each time
 * and run a major GC every few dozen requests). A buffer stays valid and
 * unchanged until reply(handle, worker, result); a request is answered to
 * the kernel only after JavaScript replied, never before. Concurrency is the
 * worker count.
 *
 * Several mounts per process (one per volume): everything a mount uses is in
 * its own struct volume (session, request queue, workers, buffers); the only
 * static state is current_worker, which is per thread, and each worker thread
 * serves one mount.
 */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define UDRBD_FUSE3_WORKERS 16
#define UDRBD_FUSE3_REQUEST_MAX_BYTES (1024 * 1024)
/* A request's size is bounded by the negotiated max_write (op_init sets it
 * to UDRBD_FUSE3_REQUEST_MAX_BYTES) plus its headers, well under 4 KiB: the
 * kernel never writes more than that into a receive buffer, whatever read
 * length libfuse passes (libfuse 3.14 passes its session buffer size, 256
 * pages + 4 KiB, which is exactly this). */
#define UDRBD_FUSE3_RECEIVE_BYTES (UDRBD_FUSE3_REQUEST_MAX_BYTES + 4096)
#define UDRBD_FUSE3_BUFFER_ALIGN 4096
#define VOLUME_INO 2
#define VOLUME_NAME "volume"

enum { KIND_READ = 0, KIND_WRITE = 1, KIND_FLUSH = 2, KIND_FSYNC = 3 };

typedef struct volume volume_t;

typedef struct {
  volume_t *v;
  int index;
  pthread_t thread;
  int started;
  char *receive; /* UDRBD_FUSE3_RECEIVE_BYTES: libfuse reads requests into it */
  char *read_buf; /* UDRBD_FUSE3_REQUEST_MAX_BYTES: JavaScript fills it for reads */
  /* The request handed to JavaScript; valid while `pending`. */
  int kind;
  int buffer_index; /* into buffers(): 2*index receive, 2*index+1 read; -1 none */
  size_t data_offset;
  size_t length;
  off_t offset;
  int result; /* bytes or negative errno, set by reply() */
  int pending;
  sem_t done;
} worker_t;

struct volume {
  struct fuse_session *se;
  napi_threadsafe_function tsfn;
  uint64_t size_bytes; /* read by the libfuse threads, grown by setSize(): __atomic loads/stores */
  int read_only;
  int direct_io;
  int unmounted;
  worker_t workers[UDRBD_FUSE3_WORKERS];
  /* Strong references to the Buffers over the worker buffers, dropped once unmounted. */
  napi_ref buffer_refs[2 * UDRBD_FUSE3_WORKERS];
};

/* The worker running the current libfuse callback (the callbacks run on the worker that read the request). */
static __thread worker_t *current_worker;

#define NAPI_OK(call)                                                   \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, NULL, "udrbd-fuse3: " #call " failed");     \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

static void fill_attr(volume_t *v, fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof(*st));
  st->st_ino = ino;
  st->st_uid = 0;
  st->st_gid = 0;
  if (ino == FUSE_ROOT_ID) {
    st->st_mode = S_IFDIR | 0700;
    st->st_nlink = 2;
    st->st_size = 4096;
  } else {
    st->st_mode = S_IFREG | (v->read_only ? 0400 : 0600);
    st->st_nlink = 1;
    uint64_t size_bytes = __atomic_load_n(&v->size_bytes, __ATOMIC_ACQUIRE);
    st->st_size = (off_t)size_bytes;
    st->st_blocks = (blkcnt_t)((size_bytes + 511) / 512);
    st->st_blksize = 4096;
  }
}

/* ---- handing a request to JavaScript and waiting for its reply ---- */

static int call_js(worker_t *w) {
  w->result = -EIO;
  w->pending = 1;
  if (napi_call_threadsafe_function(w->v->tsfn, w, napi_tsfn_blocking) != napi_ok) {
    w->pending = 0;
    return -EIO;
  }
  while (sem_wait(&w->done) != 0 && errno == EINTR) {
  }
  return w->result;
}

/* On the JS thread: onRequest(kind, worker, bufferIndex, dataOffset, offset, length). */
static void js_dispatch(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  worker_t *w = (worker_t *)data;
  if (env == NULL || callback == NULL) {
    w->result = -EIO;
    w->pending = 0;
    sem_post(&w->done);
    return;
  }
  napi_value argv[6];
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, w->kind, &argv[0]);
  napi_create_int32(env, w->index, &argv[1]);
  napi_create_int32(env, w->buffer_index, &argv[2]);
  napi_create_int32(env, (int32_t)w->data_offset, &argv[3]);
  napi_create_double(env, (double)w->offset, &argv[4]);
  napi_create_int32(env, (int32_t)w->length, &argv[5]);
  napi_value ignored;
  if (napi_call_function(env, undefined, callback, 6, argv, &ignored) != napi_ok) {
    /* The JS callback threw: answer EIO instead of leaving the worker waiting. */
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    if (w->pending) {
      w->result = -EIO;
      w->pending = 0;
      sem_post(&w->done);
    }
  }
}

/* ---- low-level operations ---- */

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  conn->max_write = UDRBD_FUSE3_REQUEST_MAX_BYTES;
  conn->max_read = UDRBD_FUSE3_REQUEST_MAX_BYTES; /* must equal the max_read mount option */
  conn->max_readahead = UDRBD_FUSE3_REQUEST_MAX_BYTES;
  conn->max_background = UDRBD_FUSE3_WORKERS;
  conn->congestion_threshold = UDRBD_FUSE3_WORKERS * 3 / 4;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  volume_t *v = fuse_req_userdata(req);
  if (parent != FUSE_ROOT_ID || strcmp(name, VOLUME_NAME) != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct fuse_entry_param e;
  memset(&e, 0, sizeof(e));
  e.ino = VOLUME_INO;
  e.attr_timeout = 3600.0;
  e.entry_timeout = 3600.0;
  fill_attr(v, VOLUME_INO, &e.attr);
  fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  volume_t *v = fuse_req_userdata(req);
  if (ino != FUSE_ROOT_ID && ino != VOLUME_INO) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct stat st;
  fill_attr(v, ino, &st);
  fuse_reply_attr(req, &st, 3600.0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  (void)fi;
  volume_t *v = fuse_req_userdata(req);
  /* Only a truncate to the current size is accepted (a no-op, like the fuse-native table). */
  if (ino != VOLUME_INO || to_set != FUSE_SET_ATTR_SIZE || (uint64_t)attr->st_size != __atomic_load_n(&v->size_bytes, __ATOMIC_ACQUIRE)) {
    fuse_reply_err(req, EPERM);
    return;
  }
  struct stat st;
  fill_attr(v, ino, &st);
  fuse_reply_attr(req, &st, 3600.0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  volume_t *v = fuse_req_userdata(req);
  if (ino == FUSE_ROOT_ID) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (ino != VOLUME_INO) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  if (v->read_only && (fi->flags & O_ACCMODE) != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  fi->direct_io = v->direct_io ? 1 : 0;
  fi->keep_cache = 0;
  fuse_reply_open(req, fi);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  volume_t *v = fuse_req_userdata(req);
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  char buf[512];
  size_t used = 0;
  const char *names[3] = {".", "..", VOLUME_NAME};
  fuse_ino_t inos[3] = {FUSE_ROOT_ID, FUSE_ROOT_ID, VOLUME_INO};
  for (off_t i = off; i < 3; i++) {
    struct stat st;
    fill_attr(v, inos[i], &st);
    size_t need = fuse_add_direntry(req, buf + used, sizeof(buf) - used, names[i], &st, i + 1);
    if (need > sizeof(buf) - used || used + need > size) break;
    used += need;
  }
  fuse_reply_buf(req, buf, used);
}

static void op_release_ok(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  (void)fi;
  fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)ino;
  (void)datasync;
  (void)fi;
  fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  volume_t *v = fuse_req_userdata(req);
  struct statvfs s;
  memset(&s, 0, sizeof(s));
  s.f_bsize = 4096;
  s.f_frsize = 4096;
  s.f_blocks = (fsblkcnt_t)((__atomic_load_n(&v->size_bytes, __ATOMIC_ACQUIRE) + 4095) / 4096);
  s.f_files = 1;
  s.f_namemax = 255;
  fuse_reply_statfs(req, &s);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  worker_t *w = current_worker;
  if (ino != VOLUME_INO) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (w == NULL) {
    fuse_reply_err(req, EIO);
    return;
  }
  if (size > UDRBD_FUSE3_REQUEST_MAX_BYTES) size = UDRBD_FUSE3_REQUEST_MAX_BYTES;
  w->kind = KIND_READ;
  w->buffer_index = 2 * w->index + 1;
  w->data_offset = 0;
  w->length = size;
  w->offset = off;
  int result = call_js(w);
  if (result < 0) fuse_reply_err(req, -result);
  else fuse_reply_buf(req, w->read_buf, (size_t)result <= size ? (size_t)result : size);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  volume_t *v = fuse_req_userdata(req);
  worker_t *w = current_worker;
  if (ino != VOLUME_INO) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (v->read_only) {
    fuse_reply_err(req, EROFS);
    return;
  }
  if (w == NULL || size > UDRBD_FUSE3_REQUEST_MAX_BYTES) {
    fuse_reply_err(req, EIO);
    return;
  }
  w->kind = KIND_WRITE;
  w->length = size;
  w->offset = off;
  if (buf >= w->receive && buf + size <= w->receive + UDRBD_FUSE3_RECEIVE_BYTES) {
    /* The data is where the kernel put it: hand JavaScript that place. */
    w->buffer_index = 2 * w->index;
    w->data_offset = (size_t)(buf - w->receive);
  } else {
    /* libfuse handed us another buffer (it does not, without splice): copy once. */
    memcpy(w->read_buf, buf, size);
    w->buffer_index = 2 * w->index + 1;
    w->data_offset = 0;
  }
  int result = call_js(w);
  if (result < 0) fuse_reply_err(req, -result);
  else fuse_reply_write(req, (size_t)result);
}

static void flush_like(fuse_req_t req, fuse_ino_t ino, int kind) {
  worker_t *w = current_worker;
  if (ino != VOLUME_INO) {
    fuse_reply_err(req, 0);
    return;
  }
  if (w == NULL) {
    fuse_reply_err(req, EIO);
    return;
  }
  w->kind = kind;
  w->buffer_index = -1;
  w->data_offset = 0;
  w->length = 0;
  w->offset = 0;
  int result = call_js(w);
  fuse_reply_err(req, result < 0 ? -result : 0);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)fi;
  flush_like(req, ino, KIND_FLUSH);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)fi;
  (void)datasync;
  flush_like(req, ino, KIND_FSYNC);
}

static void op_refuse_entry(fuse_req_t req) { fuse_reply_err(req, EPERM); }
static void op_mknod(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, dev_t d) { (void)p; (void)n; (void)m; (void)d; op_refuse_entry(req); }
static void op_mkdir(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m) { (void)p; (void)n; (void)m; op_refuse_entry(req); }
static void op_unlink(fuse_req_t req, fuse_ino_t p, const char *n) { (void)p; (void)n; op_refuse_entry(req); }
static void op_rmdir(fuse_req_t req, fuse_ino_t p, const char *n) { (void)p; (void)n; op_refuse_entry(req); }
static void op_symlink(fuse_req_t req, const char *l, fuse_ino_t p, const char *n) { (void)l; (void)p; (void)n; op_refuse_entry(req); }
static void op_rename(fuse_req_t req, fuse_ino_t p, const char *n, fuse_ino_t np, const char *nn, unsigned int f) { (void)p; (void)n; (void)np; (void)nn; (void)f; op_refuse_entry(req); }
static void op_link(fuse_req_t req, fuse_ino_t i, fuse_ino_t np, const char *nn) { (void)i; (void)np; (void)nn; op_refuse_entry(req); }
static void op_create(fuse_req_t req, fuse_ino_t p, const char *n, mode_t m, struct fuse_file_info *fi) { (void)p; (void)n; (void)m; (void)fi; op_refuse_entry(req); }

static const struct fuse_lowlevel_ops volume_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .fsync = op_fsync,
    .release = op_release_ok,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_release_ok,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .create = op_create,
};

/* One worker: read a request into its own buffer, let libfuse dispatch it (on this thread), repeat. */
static void *worker_main(void *arg) {
  worker_t *w = (worker_t *)arg;
  struct fuse_session *se = w->v->se;
  current_worker = w;
  while (!fuse_session_exited(se)) {
    struct fuse_buf fbuf = {.mem = w->receive, .size = UDRBD_FUSE3_RECEIVE_BYTES};
    int res = fuse_session_receive_buf(se, &fbuf);
    if (res == -EINTR) continue;
    if (res <= 0) {
      /* 0: unmounted (ENODEV) or exited; < 0: the device failed. Either way every worker stops. */
      fuse_session_exit(se);
      break;
    }
    fuse_session_process_buf(se, &fbuf);
  }
  return NULL;
}

static void free_buffer(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

static void volume_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  volume_t *v = (volume_t *)data;
  /* Only freed once unmounted: a mounted volume keeps its session and workers. */
  if (!v->unmounted) return;
  for (int i = 0; i < UDRBD_FUSE3_WORKERS; i++) sem_destroy(&v->workers[i].done);
  free(v);
}

/* Stops the workers started so far and undoes the mount (mount failed half-way). */
static void abandon_mount(volume_t *v) {
  fuse_session_exit(v->se);
  fuse_session_unmount(v->se);
  for (int i = 0; i < UDRBD_FUSE3_WORKERS; i++) {
    if (v->workers[i].started) pthread_join(v->workers[i].thread, NULL);
  }
  fuse_session_destroy(v->se);
}

/* Allocates the worker buffers and wraps each in a Buffer once (JS frees them when collected). */
static int create_worker_buffers(napi_env env, volume_t *v) {
  for (int i = 0; i < UDRBD_FUSE3_WORKERS; i++) {
    worker_t *w = &v->workers[i];
    w->v = v;
    w->index = i;
    if (sem_init(&w->done, 0, 0) != 0) return -1;
    void *receive = NULL;
    void *read_buf = NULL;
    if (posix_memalign(&receive, UDRBD_FUSE3_BUFFER_ALIGN, UDRBD_FUSE3_RECEIVE_BYTES) != 0) return -1;
    if (posix_memalign(&read_buf, UDRBD_FUSE3_BUFFER_ALIGN, UDRBD_FUSE3_REQUEST_MAX_BYTES) != 0) {
      free(receive);
      return -1;
    }
    napi_value buffer;
    if (napi_create_external_buffer(env, UDRBD_FUSE3_RECEIVE_BYTES, receive, free_buffer, NULL, &buffer) != napi_ok) {
      free(receive);
      free(read_buf);
      return -1;
    }
    w->receive = receive;
    if (napi_create_reference(env, buffer, 1, &v->buffer_refs[2 * i]) != napi_ok) {
      free(read_buf);
      return -1;
    }
    if (napi_create_external_buffer(env, UDRBD_FUSE3_REQUEST_MAX_BYTES, read_buf, free_buffer, NULL, &buffer) != napi_ok) {
      free(read_buf);
      return -1;
    }
    w->read_buf = read_buf;
    if (napi_create_reference(env, buffer, 1, &v->buffer_refs[2 * i + 1]) != napi_ok) return -1;
  }
  return 0;
}

static void delete_buffer_refs(napi_env env, volume_t *v) {
  for (int i = 0; i < 2 * UDRBD_FUSE3_WORKERS; i++) {
    if (v->buffer_refs[i] != NULL) napi_delete_reference(env, v->buffer_refs[i]);
    v->buffer_refs[i] = NULL;
  }
}

/*
 * A mount that failed part way: drop what it made (the request queue when
 * `tsfn_made`, the buffer references), mark the handle unmounted so its
 * finalizer frees it, and throw `message`. Returns NULL for js_mount.
 */
static napi_value fail_mount(napi_env env, volume_t *v, int tsfn_made, const char *message) {
  if (tsfn_made) napi_release_threadsafe_function(v->tsfn, napi_tsfn_abort);
  delete_buffer_refs(env, v);
  v->unmounted = 1;
  napi_throw_error(env, NULL, message);
  return NULL;
}

/* mount(mountDir, fsname, sizeBytes, readOnly, directIo, onRequest) -> handle */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 6) {
    napi_throw_type_error(env, NULL, "mount(mountDir, fsname, sizeBytes, readOnly, directIo, onRequest)");
    return NULL;
  }
  char mount_dir[4096];
  char fsname[256];
  size_t len;
  NAPI_OK(napi_get_value_string_utf8(env, argv[0], mount_dir, sizeof(mount_dir), &len));
  NAPI_OK(napi_get_value_string_utf8(env, argv[1], fsname, sizeof(fsname), &len));
  double size_bytes;
  bool read_only, direct_io;
  NAPI_OK(napi_get_value_double(env, argv[2], &size_bytes));
  NAPI_OK(napi_get_value_bool(env, argv[3], &read_only));
  NAPI_OK(napi_get_value_bool(env, argv[4], &direct_io));

  volume_t *v = calloc(1, sizeof(volume_t));
  if (v == NULL) {
    napi_throw_error(env, NULL, "udrbd-fuse3: out of memory");
    return NULL;
  }
  v->size_bytes = (uint64_t)size_bytes;
  v->read_only = read_only;
  v->direct_io = direct_io;
  /* The handle owns v from here: its finalizer frees v once unmounted. */
  napi_value handle;
  if (napi_create_external(env, v, volume_finalize, NULL, &handle) != napi_ok) {
    free(v);
    napi_throw_error(env, NULL, "udrbd-fuse3: cannot create the volume handle");
    return NULL;
  }
  if (create_worker_buffers(env, v) != 0) return fail_mount(env, v, 0, "udrbd-fuse3: cannot allocate the worker buffers");

  napi_value name;
  NAPI_OK(napi_create_string_utf8(env, "udrbd-fuse3", NAPI_AUTO_LENGTH, &name));
  if (napi_create_threadsafe_function(env, argv[5], NULL, name, 0, 1, NULL, NULL, NULL, js_dispatch, &v->tsfn) != napi_ok) {
    return fail_mount(env, v, 0, "udrbd-fuse3: cannot create the request queue");
  }
  /* Stays referenced while mounted: like a listening socket, a mounted volume keeps its server process alive. */

  char options[512];
  snprintf(options, sizeof(options), "fsname=%s,subtype=udrbd,max_read=%d,default_permissions,allow_other", fsname, UDRBD_FUSE3_REQUEST_MAX_BYTES);
  char *args_v[] = {"udrbd", "-o", options, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, args_v);
  v->se = fuse_session_new(&args, &volume_ops, sizeof(volume_ops), v);
  if (v->se == NULL) return fail_mount(env, v, 1, "udrbd-fuse3: fuse_session_new failed (bad options?)");
  if (fuse_session_mount(v->se, mount_dir) != 0) {
    fuse_session_destroy(v->se);
    v->se = NULL;
    return fail_mount(env, v, 1, "udrbd-fuse3: fuse_session_mount failed (is /dev/fuse present, the mount point a directory?)");
  }
  for (int i = 0; i < UDRBD_FUSE3_WORKERS; i++) {
    worker_t *w = &v->workers[i];
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
      abandon_mount(v);
      v->se = NULL;
      return fail_mount(env, v, 1, "udrbd-fuse3: cannot start the FUSE worker threads");
    }
    w->started = 1;
  }
  return handle;
}

/* The volume behind a handle from mount(), or NULL with a JS exception pending. */
static volume_t *volume_arg(napi_env env, napi_value handle) {
  void *ptr = NULL;
  if (napi_get_value_external(env, handle, &ptr) != napi_ok || ptr == NULL) {
    napi_throw_type_error(env, NULL, "udrbd-fuse3: not a volume handle from mount()");
    return NULL;
  }
  return (volume_t *)ptr;
}

/* buffers(handle) -> Buffer[]: worker i's receive buffer at 2i, its read buffer at 2i+1. */
static napi_value js_buffers(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  volume_t *v = volume_arg(env, argv[0]);
  if (v == NULL) return NULL;
  if (v->unmounted) {
    napi_throw_error(env, NULL, "udrbd-fuse3: buffers() of a volume that is not mounted");
    return NULL;
  }
  napi_value array;
  NAPI_OK(napi_create_array_with_length(env, 2 * UDRBD_FUSE3_WORKERS, &array));
  for (int i = 0; i < 2 * UDRBD_FUSE3_WORKERS; i++) {
    napi_value buffer;
    NAPI_OK(napi_get_reference_value(env, v->buffer_refs[i], &buffer));
    NAPI_OK(napi_set_element(env, array, (uint32_t)i, buffer));
  }
  return array;
}

/* reply(handle, worker, bytesOrNegativeErrno) */
static napi_value js_reply(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  volume_t *v = volume_arg(env, argv[0]);
  if (v == NULL) return NULL;
  int32_t index;
  int32_t result;
  NAPI_OK(napi_get_value_int32(env, argv[1], &index));
  NAPI_OK(napi_get_value_int32(env, argv[2], &result));
  if (index < 0 || index >= UDRBD_FUSE3_WORKERS || !v->workers[index].pending) {
    napi_throw_error(env, NULL, "udrbd-fuse3: reply() to a worker with no request waiting (answered twice?)");
    return NULL;
  }
  worker_t *w = &v->workers[index];
  w->result = result;
  w->pending = 0;
  sem_post(&w->done);
  return NULL;
}

/* setSize(handle, sizeBytes): the volume grew (udrbd resize). Only growth is
 * accepted. The kernel caches the file's attributes for an hour, so they are
 * invalidated (attributes only: a negative offset touches no page cache, and
 * so never waits on a request this JS thread would have to answer); the next
 * stat, and `losetup -c`, see the new size. */
static napi_value js_set_size(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  volume_t *v = volume_arg(env, argv[0]);
  if (v == NULL) return NULL;
  double size_bytes;
  NAPI_OK(napi_get_value_double(env, argv[1], &size_bytes));
  uint64_t now = __atomic_load_n(&v->size_bytes, __ATOMIC_ACQUIRE);
  if (!(size_bytes >= (double)now) || size_bytes > 9007199254740991.0 || v->se == NULL || v->unmounted) {
    napi_throw_error(env, NULL, "udrbd-fuse3: setSize() only grows a mounted volume");
    return NULL;
  }
  __atomic_store_n(&v->size_bytes, (uint64_t)size_bytes, __ATOMIC_RELEASE);
  int rc = fuse_lowlevel_notify_inval_inode(v->se, VOLUME_INO, -1, 0);
  if (rc != 0 && rc != -ENOENT) {
    napi_throw_error(env, NULL, "udrbd-fuse3: fuse_lowlevel_notify_inval_inode failed");
    return NULL;
  }
  return NULL;
}

/* ---- unmount on a pool thread: the FUSE thread may wait for this JS thread ---- */

typedef struct {
  volume_t *v;
  napi_async_work work;
  napi_deferred deferred;
} unmount_job_t;

static void unmount_execute(napi_env env, void *data) {
  (void)env;
  unmount_job_t *job = (unmount_job_t *)data;
  volume_t *v = job->v;
  fuse_session_exit(v->se);
  fuse_session_unmount(v->se);
  for (int i = 0; i < UDRBD_FUSE3_WORKERS; i++) {
    if (v->workers[i].started) pthread_join(v->workers[i].thread, NULL);
  }
  fuse_session_destroy(v->se);
  v->se = NULL;
}

static void unmount_complete(napi_env env, napi_status status, void *data) {
  unmount_job_t *job = (unmount_job_t *)data;
  volume_t *v = job->v;
  napi_release_threadsafe_function(v->tsfn, napi_tsfn_release);
  delete_buffer_refs(env, v);
  v->unmounted = 1;
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  if (status == napi_ok) napi_resolve_deferred(env, job->deferred, undefined);
  else {
    napi_value msg, err;
    napi_create_string_utf8(env, "udrbd-fuse3: unmount failed", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, job->deferred, err);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

/* unmount(handle) -> Promise<void> */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  volume_t *v = volume_arg(env, argv[0]);
  if (v == NULL) return NULL;
  napi_value promise;
  unmount_job_t *job = calloc(1, sizeof(unmount_job_t));
  if (job == NULL || v->se == NULL || v->unmounted) {
    free(job);
    napi_throw_error(env, NULL, "udrbd-fuse3: unmount of a volume that is not mounted");
    return NULL;
  }
  job->v = v;
  NAPI_OK(napi_create_promise(env, &job->deferred, &promise));
  napi_value name;
  NAPI_OK(napi_create_string_utf8(env, "udrbd-fuse3-unmount", NAPI_AUTO_LENGTH, &name));
  NAPI_OK(napi_create_async_work(env, NULL, name, unmount_execute, unmount_complete, job, &job->work));
  NAPI_OK(napi_queue_async_work(env, job->work));
  return promise;
}

static napi_value init_module(napi_env env, napi_value exports) {
  napi_value fn;
  NAPI_OK(napi_create_function(env, "mount", NAPI_AUTO_LENGTH, js_mount, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "mount", fn));
  NAPI_OK(napi_create_function(env, "reply", NAPI_AUTO_LENGTH, js_reply, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "reply", fn));
  NAPI_OK(napi_create_function(env, "buffers", NAPI_AUTO_LENGTH, js_buffers, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "buffers", fn));
  NAPI_OK(napi_create_function(env, "unmount", NAPI_AUTO_LENGTH, js_unmount, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "unmount", fn));
  NAPI_OK(napi_create_function(env, "setSize", NAPI_AUTO_LENGTH, js_set_size, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "setSize", fn));
  napi_value n;
  NAPI_OK(napi_create_int32(env, UDRBD_FUSE3_REQUEST_MAX_BYTES, &n));
  NAPI_OK(napi_set_named_property(env, exports, "requestMaxBytes", n));
  NAPI_OK(napi_create_int32(env, UDRBD_FUSE3_WORKERS, &n));
  NAPI_OK(napi_set_named_property(env, exports, "threadsMax", n));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
