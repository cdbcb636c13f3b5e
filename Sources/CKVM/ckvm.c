#include "ckvm.h"
#include <stdlib.h>

struct kvm_cpuid2 *ckvm_cpuid2_alloc(uint32_t count) {
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + count * sizeof(struct kvm_cpuid_entry2));
    if (c) c->nent = count;
    return c;
}

struct kvm_msrs *ckvm_msrs_alloc(uint32_t count) {
    struct kvm_msrs *m = calloc(1, sizeof(*m) + count * sizeof(struct kvm_msr_entry));
    if (m) m->nmsrs = count;
    return m;
}

struct kvm_msr_list *ckvm_msr_list_alloc(uint32_t count) {
    struct kvm_msr_list *l = calloc(1, sizeof(*l) + count * sizeof(uint32_t));
    if (l) l->nmsrs = count;
    return l;
}
