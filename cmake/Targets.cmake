# Helpers so every target gets the same settings.

# wsa_library(name SOURCES ... DEPS ...): a static library of our own code.
function(wsa_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/include PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${A_DEPS} wsa_sanitizers PRIVATE ${A_PRIVATE_DEPS} wsa_warnings)
endfunction()

# wsa_executable(name SOURCES ... DEPS ...)
function(wsa_executable name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PRIVATE ${A_DEPS} wsa_warnings wsa_sanitizers)
endfunction()
