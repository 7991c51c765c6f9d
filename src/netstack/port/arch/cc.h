/* lwIP's platform header for the agent (Linux, 64-bit, single-threaded). */
#ifndef WSA_LWIP_ARCH_CC_H
#define WSA_LWIP_ARCH_CC_H

#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif
unsigned int wsa_lwip_rand(void);
void wsa_lwip_assert(const char* message, const char* file, int line);
#ifdef __cplusplus
}
#endif

#define LWIP_RAND() (wsa_lwip_rand())
#define LWIP_ERRNO_STDINCLUDE 1
#define LWIP_TIMEVAL_PRIVATE 0
#define LWIP_PLATFORM_DIAG(x) \
  do {                        \
  } while (0)
#define LWIP_PLATFORM_ASSERT(x) wsa_lwip_assert((x), __FILE__, __LINE__)

#endif
