# wsa_sanitizers: ASan + UBSan when WSA_SANITIZE is on. Linked by every target we build, so the
# runtime flags reach executables and tests alike.
add_library(wsa_sanitizers INTERFACE)
if(WSA_SANITIZE)
  set(_san -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
  target_compile_options(wsa_sanitizers INTERFACE ${_san})
  target_link_options(wsa_sanitizers INTERFACE ${_san})
endif()
