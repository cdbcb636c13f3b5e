/* Do AVX-512 registers (ymm16/ymm17, not in the FXSAVE area) survive while
 * another process runs?  usage: ymmcheck ROUNDS SPIN */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100, spin = argc > 2 ? atol(argv[2]) : 1000000, badx = 0, bady = 0;
    unsigned char tag = (unsigned char)getpid();
    for (long i = 0; i < n; i++) {
        unsigned char want[64] __attribute__((aligned(32))), got[64] __attribute__((aligned(32)));
        unsigned char wx[16] __attribute__((aligned(16))), gx[16] __attribute__((aligned(16)));
        memset(want, (unsigned char)(tag + i), 64);
        memset(wx, (unsigned char)(tag + i + 1), 16);
        asm volatile("vmovdqu64 (%0),%%ymm16\n vmovdqu64 32(%0),%%ymm17\n movdqa (%1),%%xmm5" :: "r"(want), "r"(wx) : "memory");
        for (volatile long k = 0; k < spin; k++) ;
        asm volatile("vmovdqu64 %%ymm16,(%0)\n vmovdqu64 %%ymm17,32(%0)\n movdqa %%xmm5,(%1)" :: "r"(got), "r"(gx) : "memory");
        if (memcmp(want, got, 64)) {
            if (bady++ < 2) {
                printf("YMM-CHECK: pid %d round %ld ymm16/17 want %02x got", getpid(), i, want[0]);
                for (int b = 0; b < 64; b += 8) printf(" %02x", got[b]);
                printf("\n");
            }
        }
        if (memcmp(wx, gx, 16)) badx++;
    }
    printf("YMM-CHECK: pid %d rounds %ld ymm16/17 bad %ld xmm5 bad %ld\n", getpid(), n, bady, badx);
    return 0;
}
