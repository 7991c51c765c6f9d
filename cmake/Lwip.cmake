# lwIP 2.1.3, compiled from Debian's source package with our own options
# (src/netstack/port/lwipopts.h): the userspace TCP/IP stack of the overlay. The tarball is
# fetched into a cache by scripts/fetch-lwip.sh (install-deps.sh runs it) and unpacked into the
# build tree; no lwIP source is committed. Debian's liblwip-dev is not used: it is built for a
# threaded stack (NO_SYS 0) with fixed options.

set(WSA_DEPS_CACHE "$ENV{HOME}/.cache/wsa-deps" CACHE PATH "Where fetched source tarballs are kept")
if(DEFINED ENV{WSA_DEPS_CACHE})
  set(WSA_DEPS_CACHE "$ENV{WSA_DEPS_CACHE}")
endif()
set(_lwip_name "lwip_2.1.3+dfsg1.orig.tar.xz")
set(_lwip_sha256 "0a8276d09fc4e97bbba2f953d74af2388fc2195ea156be9d7589e297a68fde24")
set(_lwip_tar "${WSA_DEPS_CACHE}/${_lwip_name}")

if(NOT EXISTS "${_lwip_tar}")
  message(STATUS "lwIP source not in ${WSA_DEPS_CACHE}: running scripts/fetch-lwip.sh")
  execute_process(COMMAND "${PROJECT_SOURCE_DIR}/scripts/fetch-lwip.sh" "${WSA_DEPS_CACHE}"
                  RESULT_VARIABLE _rc)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "Could not fetch lwIP's source (${_lwip_name}). Run "
                        "scripts/install-deps.sh (or scripts/fetch-lwip.sh) with network access "
                        "to the Debian archive, or put the file into ${WSA_DEPS_CACHE}.")
  endif()
endif()
file(SHA256 "${_lwip_tar}" _got)
if(NOT _got STREQUAL _lwip_sha256)
  message(FATAL_ERROR "${_lwip_tar}: SHA-256 ${_got}, expected ${_lwip_sha256}. Delete it and "
                      "run scripts/fetch-lwip.sh again.")
endif()

set(_lwip_root "${CMAKE_BINARY_DIR}/_deps/lwip-2.1.3")
if(NOT EXISTS "${_lwip_root}/src/core/tcp.c")
  file(ARCHIVE_EXTRACT INPUT "${_lwip_tar}" DESTINATION "${CMAKE_BINARY_DIR}/_deps")
endif()

set(_lwip_src "${_lwip_root}/src")
add_library(wsa_lwip STATIC
  ${_lwip_src}/core/init.c ${_lwip_src}/core/def.c ${_lwip_src}/core/inet_chksum.c
  ${_lwip_src}/core/ip.c ${_lwip_src}/core/mem.c ${_lwip_src}/core/memp.c
  ${_lwip_src}/core/netif.c ${_lwip_src}/core/pbuf.c ${_lwip_src}/core/raw.c
  ${_lwip_src}/core/stats.c ${_lwip_src}/core/sys.c ${_lwip_src}/core/tcp.c
  ${_lwip_src}/core/tcp_in.c ${_lwip_src}/core/tcp_out.c ${_lwip_src}/core/timeouts.c
  ${_lwip_src}/core/udp.c
  ${_lwip_src}/core/ipv4/icmp.c ${_lwip_src}/core/ipv4/ip4.c ${_lwip_src}/core/ipv4/ip4_addr.c
  ${_lwip_src}/core/ipv4/ip4_frag.c
  ${_lwip_src}/core/ipv6/icmp6.c ${_lwip_src}/core/ipv6/inet6.c ${_lwip_src}/core/ipv6/ip6.c
  ${_lwip_src}/core/ipv6/ip6_addr.c ${_lwip_src}/core/ipv6/ip6_frag.c
  ${_lwip_src}/core/ipv6/nd6.c ${_lwip_src}/core/ipv6/mld6.c)
# Our options first, then lwIP's headers. Third-party code: no warnings of ours.
target_include_directories(wsa_lwip SYSTEM PUBLIC
  "${PROJECT_SOURCE_DIR}/src/netstack/port" "${_lwip_src}/include")
target_compile_options(wsa_lwip PRIVATE -w)
target_link_libraries(wsa_lwip PUBLIC wsa_sanitizers)
set_target_properties(wsa_lwip PROPERTIES POSITION_INDEPENDENT_CODE ON)
wsa_record_target(wsa_lwip KIND third_party
                  INCLUDE_DIRS "${PROJECT_SOURCE_DIR}/src/netstack/port" "${_lwip_src}/include")
