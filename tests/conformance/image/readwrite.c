/* The `readwrite` program of KubeArmor's test image: `readwrite -r FILE` reads one byte of FILE
 * and prints it, `readwrite -w FILE` appends to FILE; exits non-zero with the error on failure. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "-r") && strcmp(argv[1], "-w"))) {
		fprintf(stderr, "usage: %s -r|-w FILE\n", argv[0]);
		return 2;
	}
	int reading = !strcmp(argv[1], "-r");
	int fd = open(argv[2], reading ? O_RDONLY : (O_WRONLY | O_APPEND));
	if (fd < 0) {
		printf("Error! (%s)\n", strerror(errno));
		return 1;
	}
	char c;
	ssize_t n = reading ? read(fd, &c, 1) : write(fd, "w", 1);
	if (n != 1) {
		printf("Error! (%s)\n", n < 0 ? strerror(errno) : "short");
		close(fd);
		return 1;
	}
	if (reading)
		printf("%c\n", c);
	close(fd);
	return 0;
}
