/* hello: one line on the 16550 at 0x3f8, then ACPI power-off (all at CPL0). */
#include "rt.h"

const int fw_run_in_user_mode = 0;

int main(void)
{
	puts("Hello from Skiff firmware\n");
	return 0;
}
