// An LD_PRELOAD allocation counter for a running process (the gateway under test).
//
//   clang -shared -fPIC -O2 -o malloc-counter.so malloc-counter.c -ldl
//   FG_MALLOC_COUNTS=/tmp/counts LD_PRELOAD=./malloc-counter.so fusion-gateway serve ...
//
// Counts every allocation (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) and
// every free, and the bytes live (malloc_usable_size), in a small file mapped shared: a reader
// (Benchmarks/gate/perf-gate.py, latency-bench) snapshots the counters at any moment without
// stopping the process. Counters are relaxed atomics: exact totals, no ordering needed.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// The file's layout: a magic word, then the counters (8 bytes each, little-endian).
struct counters {
    uint64_t magic;  // "FGMALLOC"
    _Atomic uint64_t allocations;
    _Atomic uint64_t frees;
    _Atomic int64_t live_bytes;
    _Atomic uint64_t allocated_bytes;
};

static struct counters fallback;  // until (or unless) the file is mapped
static struct counters *counts = &fallback;

static void *(*real_malloc)(size_t);
static void (*real_free)(void *);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);

// dlsym may itself call calloc before real_calloc is known: serve that from a static arena.
static char bootstrap[4096];
static size_t bootstrap_used;
static int resolving;

static int from_bootstrap(void *pointer) {
    return (char *)pointer >= bootstrap && (char *)pointer < bootstrap + sizeof bootstrap;
}

static void resolve(void) {
    if (real_malloc || resolving) return;
    resolving = 1;
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_free = dlsym(RTLD_NEXT, "free");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = dlsym(RTLD_NEXT, "memalign");
    resolving = 0;
}

__attribute__((constructor)) static void map_counters(void) {
    resolve();
    const char *path = getenv("FG_MALLOC_COUNTS");
    if (!path) return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    if (ftruncate(fd, sizeof(struct counters)) == 0) {
        void *mapped = mmap(NULL, sizeof(struct counters), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mapped != MAP_FAILED) {
            struct counters *file = mapped;
            atomic_store(&file->allocations, atomic_load(&fallback.allocations));
            atomic_store(&file->frees, atomic_load(&fallback.frees));
            atomic_store(&file->live_bytes, atomic_load(&fallback.live_bytes));
            atomic_store(&file->allocated_bytes, atomic_load(&fallback.allocated_bytes));
            memcpy(&file->magic, "FGMALLOC", 8);
            counts = file;
        }
    }
    close(fd);
}

static void *counted(void *pointer) {
    if (pointer) {
        size_t size = malloc_usable_size(pointer);
        atomic_fetch_add_explicit(&counts->allocations, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&counts->live_bytes, (int64_t)size, memory_order_relaxed);
        atomic_fetch_add_explicit(&counts->allocated_bytes, size, memory_order_relaxed);
    }
    return pointer;
}

static void uncount(void *pointer) {
    if (!pointer) return;
    atomic_fetch_add_explicit(&counts->frees, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&counts->live_bytes, (int64_t)malloc_usable_size(pointer), memory_order_relaxed);
}

void *malloc(size_t size) {
    resolve();
    return counted(real_malloc(size));
}

void *calloc(size_t count, size_t size) {
    if (!real_calloc) {
        // Only while dlsym bootstraps: zeroed static memory, never freed.
        size_t bytes = (count * size + 15) & ~(size_t)15;
        if (bootstrap_used + bytes > sizeof bootstrap) return NULL;
        void *pointer = bootstrap + bootstrap_used;
        bootstrap_used += bytes;
        return pointer;
    }
    return counted(real_calloc(count, size));
}

void free(void *pointer) {
    if (!pointer || from_bootstrap(pointer)) return;
    resolve();
    uncount(pointer);
    real_free(pointer);
}

void *realloc(void *pointer, size_t size) {
    resolve();
    if (from_bootstrap(pointer)) {
        void *moved = malloc(size);
        if (moved) memcpy(moved, pointer, size);
        return moved;
    }
    if (pointer && size == 0) {
        free(pointer);
        return NULL;
    }
    // A realloc is a free and an allocation (it may move); counted as one allocation.
    size_t before = pointer ? malloc_usable_size(pointer) : 0;
    void *moved = real_realloc(pointer, size);
    if (!moved) return NULL;  // `pointer` is untouched
    if (pointer) {
        atomic_fetch_add_explicit(&counts->frees, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&counts->live_bytes, (int64_t)before, memory_order_relaxed);
    }
    return counted(moved);
}

int posix_memalign(void **out, size_t alignment, size_t size) {
    resolve();
    int result = real_posix_memalign(out, alignment, size);
    if (result == 0) counted(*out);
    return result;
}

void *aligned_alloc(size_t alignment, size_t size) {
    resolve();
    return counted(real_aligned_alloc(alignment, size));
}

void *memalign(size_t alignment, size_t size) {
    resolve();
    return counted(real_memalign(alignment, size));
}
