/* Hooks lwIP calls into the agent (implemented in src/netstack/netstack.cc). */
#ifndef WSA_LWIP_HOOKS_H
#define WSA_LWIP_HOOKS_H

#include "lwip/arch.h"
#include "lwip/ip_addr.h"

#ifdef __cplusplus
extern "C" {
#endif

u32_t wsa_lwip_tcp_isn(const ip_addr_t* local_ip, u16_t local_port, const ip_addr_t* remote_ip,
                       u16_t remote_port);

#ifdef __cplusplus
}
#endif

#endif
