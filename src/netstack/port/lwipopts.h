/* lwIP options for the overlay's userspace TCP/IP stack (see docs/overlay.md, "Userspace
 * TCP/IP"). Single-threaded: lwIP runs on the agent's event loop (NO_SYS 1), memory comes from
 * malloc, and the limits that matter are enforced by src/netstack/netstack.cc, not by pools. */
#ifndef WSA_LWIPOPTS_H
#define WSA_LWIPOPTS_H

#define NO_SYS 1
#define LWIP_TIMERS 1
#define SYS_LIGHTWEIGHT_PROT 0
#define LWIP_SOCKET 0
#define LWIP_NETCONN 0
#define LWIP_CALLBACK_API 1
#define LWIP_SINGLE_NETIF 1

#define MEM_LIBC_MALLOC 1
#define MEMP_MEM_MALLOC 1
#define MEM_ALIGNMENT 8
#define MEMP_NUM_TCP_PCB 4096
#define MEMP_NUM_TCP_PCB_LISTEN 1024
#define MEMP_NUM_TCP_SEG 65535
#define MEMP_NUM_REASSDATA 64
#define MEMP_NUM_FRAG_PBUF 256
#define PBUF_POOL_SIZE 64

/* A point-to-point interface: IP packets in and out, no link layer. */
#define LWIP_ARP 0
#define LWIP_ETHERNET 0
#define LWIP_IPV4 1
#define LWIP_IPV6 1
#define LWIP_IPV6_NUM_ADDRESSES 3
#define LWIP_IPV6_MLD 0
#define LWIP_IPV6_AUTOCONFIG 0
#define LWIP_IPV6_SEND_ROUTER_SOLICIT 0
#define LWIP_IPV6_DUP_DETECT_ATTEMPTS 0
#define LWIP_ND6_ALLOW_RA_UPDATES 0
#define LWIP_ND6_TCP_REACHABILITY_HINTS 0
#define LWIP_IPV6_FRAG 1
#define LWIP_IPV6_REASS 1
#define IPV6_FRAG_COPYHEADER 1 /* required on 64-bit */
#define IP_REASSEMBLY 1
/* Fragments waiting for reassembly, IPv4 and IPv6 together (lwIP's default, 10, is less than
 * one 20 KB datagram at MTU 1420): room for about two datagrams of 64 KiB. */
#define IP_REASS_MAX_PBUFS 96
#define IP_FRAG 1
#define IP_FORWARD 0
#define LWIP_ICMP 1
#define LWIP_ICMP6 1
#define LWIP_RAW 0
#define LWIP_UDP 1
#define LWIP_DHCP 0
#define LWIP_AUTOIP 0
#define LWIP_IGMP 0
#define LWIP_DNS 0
#define LWIP_NETIF_LOOPBACK 0
#define LWIP_HAVE_LOOPIF 0
#define LWIP_NETIF_STATUS_CALLBACK 0
#define LWIP_NETIF_LINK_CALLBACK 0

/* TCP: the tunnel MTU is 1420; 1420 - 40 (IPv6) = 1380. A scaled window of 64 segments each
 * way per connection (about 86 KiB), which is also the most a connection buffers. */
#define LWIP_TCP 1
#define TCP_MSS 1380
#define LWIP_WND_SCALE 1
#define TCP_RCV_SCALE 2
#define TCP_WND (64 * TCP_MSS)
#define TCP_SND_BUF (64 * TCP_MSS)
#define TCP_SND_QUEUELEN (4 * TCP_SND_BUF / TCP_MSS)
#define TCP_SNDLOWAT (TCP_SND_BUF / 2)
#define TCP_SNDQUEUELOWAT (TCP_SND_QUEUELEN / 2)
#define TCP_QUEUE_OOSEQ 1
#define TCP_OOSEQ_MAX_BYTES (TCP_WND)
#define TCP_OOSEQ_MAX_PBUFS 128
#define LWIP_TCP_SACK_OUT 1
#define LWIP_TCP_KEEPALIVE 1
#define LWIP_TCP_TIMESTAMPS 0
#define TCP_LISTEN_BACKLOG 1
#define SO_REUSE 1 /* listeners rebind while old connections on the port linger */
#define TCP_DEFAULT_LISTEN_BACKLOG 64

#define LWIP_STATS 0
#define LWIP_STATS_DISPLAY 0
#define LWIP_PERF 0

/* Random initial sequence numbers (hook in wsa_lwip_hooks.h). */
#define LWIP_HOOK_FILENAME "wsa_lwip_hooks.h"
#define LWIP_HOOK_TCP_ISN(local_ip, local_port, remote_ip, remote_port) \
  wsa_lwip_tcp_isn(local_ip, local_port, remote_ip, remote_port)

#endif /* WSA_LWIPOPTS_H */
