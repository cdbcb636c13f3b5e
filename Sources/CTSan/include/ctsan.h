#ifndef SKIFF_CTSAN_H
#define SKIFF_CTSAN_H

// Happens-before annotations for ThreadSanitizer, used by Posix's `Lock`
// (docs/security.md, Sanitizers, says why). They call TSan's public
// interface only in a build with -fsanitize=thread; otherwise they do nothing.

// The address is only a key naming the synchronisation object; it is never read.
void skiff_tsan_acquire(const void *address);
void skiff_tsan_release(const void *address);

// 1 when this C target was compiled with ThreadSanitizer, else 0 (lets a test
// check that the annotations are live in a sanitized build).
int skiff_tsan_enabled(void);

#endif
