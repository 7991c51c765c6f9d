# wsa_warnings: warning flags for our own code. Generated and third-party code does not link it.
add_library(wsa_warnings INTERFACE)
target_compile_options(wsa_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual -Wcast-align
  -Wimplicit-fallthrough -Wformat=2 -Wmissing-declarations -Wvla
  -Wno-missing-field-initializers)
if(WSA_WERROR)
  target_compile_options(wsa_warnings INTERFACE -Werror)
endif()
# GCC 12 reports -Wrestrict false positives inside libstdc++ for `"literal" + std::string` at
# -O2/-O3 (GCC bug 105329, fixed in 13). Keep the warning where the compiler gets it right.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(wsa_warnings INTERFACE -Wno-restrict)
endif()
