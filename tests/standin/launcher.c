/*
 * launcher.c: the ELF `flanneld` of the test stand-in (tests only, never shipped).
 *
 * The payload installs flanneld alone, so the stand-in's Python logic is compiled in as a C
 * string (script.h, generated at test time by tests/standin/__init__.py) and run with
 * `python3 -I -c SCRIPT ARGV0 ARGS...` (ARGV0, the name it was started as, for its usage
 * text). exec keeps the PID, so systemd's Type=notify sees the READY=1 from the process it
 * started.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "script.h" /* static const char STANDIN_SCRIPT[] */

int main(int argc, char **argv)
{
	static const char *const pythons[] = {"/usr/bin/python3", "/usr/libexec/platform-python",
					      "/usr/local/bin/python3"};
	char *args[argc + 5];
	int i;

	args[1] = "-I";
	args[2] = "-c";
	args[3] = (char *)STANDIN_SCRIPT;
	args[4] = argc > 0 ? argv[0] : "flanneld";
	for (i = 1; i < argc; i++)
		args[i + 4] = argv[i];
	args[argc + 4] = NULL;
	for (i = 0; i < (int)(sizeof(pythons) / sizeof(pythons[0])); i++) {
		args[0] = (char *)pythons[i];
		execv(pythons[i], args);
	}
	args[0] = "python3";
	execvp("python3", args);
	fprintf(stderr, "flanneld (test stand-in): cannot run python3: %s\n", strerror(errno));
	return 127;
}
