/* A tiny program copied into a disk and executed from it (XIP). It prints a fixed
 * line with its argument count and exits 42, so the test knows it really ran. */
#include <stdio.h>

int main(int argc, char **argv) {
  (void)argv;
  printf("ramdiskfs-xip-ok argc=%d\n", argc);
  return 42;
}
