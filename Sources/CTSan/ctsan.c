#include "ctsan.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SKIFF_TSAN 1
#endif
#endif

#ifdef SKIFF_TSAN
// TSan's public interface (compiler-rt's tsan_interface.h); declared here
// rather than included so the build needs no sanitizer headers.
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);

void skiff_tsan_acquire(const void *address) { __tsan_acquire((void *)address); }
void skiff_tsan_release(const void *address) { __tsan_release((void *)address); }
int skiff_tsan_enabled(void) { return 1; }
#else
void skiff_tsan_acquire(const void *address) { (void)address; }
void skiff_tsan_release(const void *address) { (void)address; }
int skiff_tsan_enabled(void) { return 0; }
#endif
