# wsa_warnings: warning flags for our own code. Generated and third-party code does not link it.
add_library(wsa_warnings INTERFACE)
target_compile_options(wsa_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual -Wcast-align
  -Wimplicit-fallthrough -Wformat=2 -Wmissing-declarations -Wvla
  -Wno-missing-field-initializers)
if(WSA_WERROR)
  target_compile_options(wsa_warnings INTERFACE -Werror)
endif()
