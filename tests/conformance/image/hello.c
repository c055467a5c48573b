/* The `hello` program of KubeArmor's test image: prints a greeting. */
#include <stdio.h>

int main(void)
{
	printf("helloworld\n");
	return 0;
}
