/* tandem.c: placeholder main, replaced by the admin command table. */
#include <stdio.h>
int main(void)
{
	puts("tandem");
	return 0;
}
