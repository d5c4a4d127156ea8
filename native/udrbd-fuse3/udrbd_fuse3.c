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
 * I/O request with reply(slot, bytesOrNegativeErrno).
 *
 * Threading: libfuse's worker threads (fuse_session_loop_mt) call the I/O
 * handlers; each one queues its request to the JS thread through a
 * threadsafe function and waits on its own semaphore until JavaScript
 * replies, so the request buffer handed to JS (the worker's receive buffer
 * for writes, a per-request allocation for reads) stays valid and unchanged
 * until the reply. Concurrency is therefore bounded by the worker count
 * (UDRBD_FUSE3_THREADS_MAX). A request is answered to the kernel only after
 * JavaScript replied, never before.
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

#define UDRBD_FUSE3_THREADS_MAX 32
#define UDRBD_FUSE3_IDLE_THREADS 8
#define UDRBD_FUSE3_REQUEST_MAX_BYTES (1024 * 1024)
#define VOLUME_INO 2
#define VOLUME_NAME "volume"

enum { KIND_READ = 0, KIND_WRITE = 1, KIND_FLUSH = 2, KIND_FSYNC = 3 };

typedef struct {
  int kind;
  char *buf; /* read: owned allocation; write: libfuse's buffer */
  size_t length;
  off_t offset;
  int result; /* bytes or negative errno, set by reply() */
  sem_t done;
} slot_t;

typedef struct {
  struct fuse_session *se;
  pthread_t loop_thread;
  int loop_started;
  napi_threadsafe_function tsfn;
  uint64_t size_bytes;
  int read_only;
  int direct_io;
  int unmounted;
} volume_t;

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
    st->st_size = (off_t)v->size_bytes;
    st->st_blocks = (blkcnt_t)((v->size_bytes + 511) / 512);
    st->st_blksize = 4096;
  }
}

/* ---- handing a request to JavaScript and waiting for its reply ---- */

static int call_js(volume_t *v, slot_t *slot) {
  if (sem_init(&slot->done, 0, 0) != 0) return -EIO;
  slot->result = -EIO;
  if (napi_call_threadsafe_function(v->tsfn, slot, napi_tsfn_blocking) != napi_ok) {
    sem_destroy(&slot->done);
    return -EIO;
  }
  while (sem_wait(&slot->done) != 0 && errno == EINTR) {
  }
  sem_destroy(&slot->done);
  return slot->result;
}

/* On the JS thread: onRequest(kind, slot, buffer|null, offset, length). */
static void js_dispatch(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  slot_t *slot = (slot_t *)data;
  if (env == NULL || callback == NULL) {
    slot->result = -EIO;
    sem_post(&slot->done);
    return;
  }
  napi_value argv[5];
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  napi_create_int32(env, slot->kind, &argv[0]);
  napi_create_external(env, slot, NULL, NULL, &argv[1]);
  if (slot->length > 0) {
    napi_create_external_buffer(env, slot->length, slot->buf, NULL, NULL, &argv[2]);
  } else {
    napi_get_null(env, &argv[2]);
  }
  napi_create_double(env, (double)slot->offset, &argv[3]);
  napi_create_double(env, (double)slot->length, &argv[4]);
  napi_value ignored;
  if (napi_call_function(env, undefined, callback, 5, argv, &ignored) != napi_ok) {
    /* The JS callback threw: answer EIO instead of leaving the worker waiting. */
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
    slot->result = -EIO;
    sem_post(&slot->done);
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
  conn->max_background = UDRBD_FUSE3_THREADS_MAX;
  conn->congestion_threshold = UDRBD_FUSE3_THREADS_MAX * 3 / 4;
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
  if (ino != VOLUME_INO || to_set != FUSE_SET_ATTR_SIZE || (uint64_t)attr->st_size != v->size_bytes) {
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
  s.f_blocks = (fsblkcnt_t)((v->size_bytes + 4095) / 4096);
  s.f_files = 1;
  s.f_namemax = 255;
  fuse_reply_statfs(req, &s);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  volume_t *v = fuse_req_userdata(req);
  if (ino != VOLUME_INO) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (size > UDRBD_FUSE3_REQUEST_MAX_BYTES) size = UDRBD_FUSE3_REQUEST_MAX_BYTES;
  slot_t slot = {.kind = KIND_READ, .length = size, .offset = off};
  slot.buf = size > 0 ? malloc(size) : NULL;
  if (size > 0 && slot.buf == NULL) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  int result = call_js(v, &slot);
  if (result < 0) fuse_reply_err(req, -result);
  else fuse_reply_buf(req, slot.buf, (size_t)result <= size ? (size_t)result : size);
  free(slot.buf);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  (void)fi;
  volume_t *v = fuse_req_userdata(req);
  if (ino != VOLUME_INO) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (v->read_only) {
    fuse_reply_err(req, EROFS);
    return;
  }
  slot_t slot = {.kind = KIND_WRITE, .buf = (char *)buf, .length = size, .offset = off};
  int result = call_js(v, &slot);
  if (result < 0) fuse_reply_err(req, -result);
  else fuse_reply_write(req, (size_t)result);
}

static void flush_like(fuse_req_t req, fuse_ino_t ino, int kind) {
  volume_t *v = fuse_req_userdata(req);
  if (ino != VOLUME_INO) {
    fuse_reply_err(req, 0);
    return;
  }
  slot_t slot = {.kind = kind, .buf = NULL, .length = 0, .offset = 0};
  int result = call_js(v, &slot);
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

static void *loop_main(void *arg) {
  volume_t *v = (volume_t *)arg;
  struct fuse_loop_config *cfg = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(cfg, UDRBD_FUSE3_THREADS_MAX);
  fuse_loop_cfg_set_idle_threads(cfg, UDRBD_FUSE3_IDLE_THREADS);
  fuse_loop_cfg_set_clone_fd(cfg, 0);
  fuse_session_loop_mt(v->se, cfg);
  fuse_loop_cfg_destroy(cfg);
  return NULL;
}

static void volume_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  volume_t *v = (volume_t *)data;
  /* Only freed once unmounted: a mounted volume keeps its session. */
  if (v->unmounted) free(v);
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

  napi_value name;
  NAPI_OK(napi_create_string_utf8(env, "udrbd-fuse3", NAPI_AUTO_LENGTH, &name));
  if (napi_create_threadsafe_function(env, argv[5], NULL, name, 0, 1, NULL, NULL, NULL, js_dispatch, &v->tsfn) != napi_ok) {
    free(v);
    napi_throw_error(env, NULL, "udrbd-fuse3: cannot create the request queue");
    return NULL;
  }
  /* Stays referenced while mounted: like a listening socket, a mounted volume keeps its server process alive. */

  char options[512];
  snprintf(options, sizeof(options), "fsname=%s,subtype=udrbd,max_read=%d,default_permissions,allow_other", fsname, UDRBD_FUSE3_REQUEST_MAX_BYTES);
  char *args_v[] = {"udrbd", "-o", options, NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, args_v);
  v->se = fuse_session_new(&args, &volume_ops, sizeof(volume_ops), v);
  if (v->se == NULL) {
    napi_release_threadsafe_function(v->tsfn, napi_tsfn_abort);
    free(v);
    napi_throw_error(env, NULL, "udrbd-fuse3: fuse_session_new failed (bad options?)");
    return NULL;
  }
  if (fuse_session_mount(v->se, mount_dir) != 0) {
    fuse_session_destroy(v->se);
    napi_release_threadsafe_function(v->tsfn, napi_tsfn_abort);
    free(v);
    napi_throw_error(env, NULL, "udrbd-fuse3: fuse_session_mount failed (is /dev/fuse present, the mount point a directory?)");
    return NULL;
  }
  if (pthread_create(&v->loop_thread, NULL, loop_main, v) != 0) {
    fuse_session_unmount(v->se);
    fuse_session_destroy(v->se);
    napi_release_threadsafe_function(v->tsfn, napi_tsfn_abort);
    free(v);
    napi_throw_error(env, NULL, "udrbd-fuse3: cannot start the FUSE thread");
    return NULL;
  }
  v->loop_started = 1;
  napi_value handle;
  NAPI_OK(napi_create_external(env, v, volume_finalize, NULL, &handle));
  return handle;
}

/* reply(slot, bytesOrNegativeErrno) */
static napi_value js_reply(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *ptr;
  int32_t result;
  NAPI_OK(napi_get_value_external(env, argv[0], &ptr));
  NAPI_OK(napi_get_value_int32(env, argv[1], &result));
  slot_t *slot = (slot_t *)ptr;
  slot->result = result;
  sem_post(&slot->done);
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
  if (v->loop_started) pthread_join(v->loop_thread, NULL);
  fuse_session_destroy(v->se);
  v->se = NULL;
}

static void unmount_complete(napi_env env, napi_status status, void *data) {
  unmount_job_t *job = (unmount_job_t *)data;
  volume_t *v = job->v;
  napi_release_threadsafe_function(v->tsfn, napi_tsfn_release);
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
  void *ptr;
  NAPI_OK(napi_get_value_external(env, argv[0], &ptr));
  volume_t *v = (volume_t *)ptr;
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
  NAPI_OK(napi_create_function(env, "unmount", NAPI_AUTO_LENGTH, js_unmount, NULL, &fn));
  NAPI_OK(napi_set_named_property(env, exports, "unmount", fn));
  napi_value n;
  NAPI_OK(napi_create_int32(env, UDRBD_FUSE3_REQUEST_MAX_BYTES, &n));
  NAPI_OK(napi_set_named_property(env, exports, "requestMaxBytes", n));
  NAPI_OK(napi_create_int32(env, UDRBD_FUSE3_THREADS_MAX, &n));
  NAPI_OK(napi_set_named_property(env, exports, "threadsMax", n));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
