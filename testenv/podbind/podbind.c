/* LD_PRELOAD shim for pods of the testenv node agent: every pod shares the
 * host's network, so a bind to the IPv4 wildcard address (0.0.0.0) is
 * rewritten to the pod's own loopback address, TESTENV_POD_IP. Nothing else
 * is changed. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  static int (*real)(int, const struct sockaddr *, socklen_t);
  if (!real) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
  const char *ip = getenv("TESTENV_POD_IP");
  if (ip && addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    struct sockaddr_in in;
    memcpy(&in, addr, sizeof in);
    if (in.sin_addr.s_addr == htonl(INADDR_ANY) && inet_pton(AF_INET, ip, &in.sin_addr) == 1)
      return real(fd, (const struct sockaddr *)&in, sizeof in);
  }
  return real(fd, addr, len);
}
