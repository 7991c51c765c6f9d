# Helpers so every target gets the same settings.
include_guard(GLOBAL)

# wsa_library(name SOURCES ... [DEPS ...] [PUBLIC_DEPS ...] [PRIVATE_DEPS ...]): a static library
# of our own code. DEPS are PUBLIC (what a public header of the library needs), the same as
# PUBLIC_DEPS; PRIVATE_DEPS are used by its sources and private headers only.
function(wsa_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS;PUBLIC_DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/include PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${A_DEPS} ${A_PUBLIC_DEPS} wsa_sanitizers
                        PRIVATE ${A_PRIVATE_DEPS} wsa_warnings)
  wsa_record_target(${name} KIND library SOURCES ${A_SOURCES}
                    PUBLIC_DEPS ${A_DEPS} ${A_PUBLIC_DEPS} PRIVATE_DEPS ${A_PRIVATE_DEPS})
endfunction()

# wsa_executable(name SOURCES ... DEPS ... [PRIVATE_DEPS ...]): every dep of a program is private.
function(wsa_executable name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PRIVATE ${A_DEPS} ${A_PRIVATE_DEPS} wsa_warnings wsa_sanitizers)
  wsa_record_target(${name} KIND executable SOURCES ${A_SOURCES}
                    PRIVATE_DEPS ${A_DEPS} ${A_PRIVATE_DEPS})
endfunction()

# The layering check (scripts/check_layers.py, ctest "layering") reads what every target may
# use from ${CMAKE_BINARY_DIR}/layers.json, written at the end of configuration from these
# records. wsa_library/wsa_executable record themselves; other targets of ours (generated
# protobuf code, lwIP) call wsa_record_target. Calling it again for a target appends.
#   wsa_record_target(name [KIND library|executable|proto|third_party] [SOURCES ...]
#                     [PUBLIC_DEPS ...] [PRIVATE_DEPS ...]
#                     [HEADERS ...]       generated headers it owns, as included ("wsa/version.h")
#                     [INCLUDE_DIRS ...]) directories whose headers it owns (third-party code)
function(wsa_record_target name)
  cmake_parse_arguments(A "" "KIND" "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS;HEADERS;INCLUDE_DIRS" ${ARGN})
  set_property(GLOBAL APPEND PROPERTY WSA_RECORDED_TARGETS ${name})
  if(A_KIND)
    set_property(GLOBAL PROPERTY WSA_RECORD_${name}_KIND ${A_KIND})
  endif()
  foreach(list SOURCES INCLUDE_DIRS)  # paths, relative to the calling directory
    set(paths)
    foreach(p IN LISTS A_${list})
      if(NOT p MATCHES "^\\$<")
        cmake_path(ABSOLUTE_PATH p BASE_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" NORMALIZE)
      endif()
      list(APPEND paths "${p}")
    endforeach()
    set_property(GLOBAL APPEND PROPERTY WSA_RECORD_${name}_${list} ${paths})
  endforeach()
  foreach(list PUBLIC_DEPS PRIVATE_DEPS HEADERS)
    set_property(GLOBAL APPEND PROPERTY WSA_RECORD_${name}_${list} ${A_${list}})
  endforeach()
endfunction()

# wsa_generated_headers(target header...): headers made at build or configure time, as they are
# included ("wsa/version.h"), owned by target.
function(wsa_generated_headers name)
  wsa_record_target(${name} HEADERS ${ARGN})
endfunction()

function(_wsa_json_string out str)  # a JSON string
  string(REPLACE "\\" "\\\\" str "${str}")
  string(REPLACE "\"" "\\\"" str "${str}")
  set(${out} "\"${str}\"" PARENT_SCOPE)
endfunction()

# _wsa_json_list(out item...): a JSON array of strings; paths inside the source tree relative to it
function(_wsa_json_list out)
  set(items)
  foreach(item IN LISTS ARGN)
    cmake_path(IS_PREFIX PROJECT_SOURCE_DIR "${item}" NORMALIZE inside)
    if(inside)
      cmake_path(RELATIVE_PATH item BASE_DIRECTORY "${PROJECT_SOURCE_DIR}")
    endif()
    _wsa_json_string(item "${item}")
    list(APPEND items "${item}")
  endforeach()
  list(JOIN items ", " joined)
  set(${out} "[${joined}]" PARENT_SCOPE)
endfunction()

function(_wsa_write_layers)
  get_property(names GLOBAL PROPERTY WSA_RECORDED_TARGETS)
  list(REMOVE_DUPLICATES names)
  list(SORT names)
  set(entries)
  foreach(name IN LISTS names)
    get_property(kind GLOBAL PROPERTY WSA_RECORD_${name}_KIND)
    set(entry "    \"${name}\": {\"kind\": \"${kind}\"")
    foreach(list SOURCES PUBLIC_DEPS PRIVATE_DEPS HEADERS INCLUDE_DIRS)
      get_property(items GLOBAL PROPERTY WSA_RECORD_${name}_${list})
      list(REMOVE_DUPLICATES items)
      _wsa_json_list(json ${items})
      string(TOLOWER "${list}" key)
      string(APPEND entry ",\n      \"${key}\": ${json}")
    endforeach()
    list(APPEND entries "${entry}}")
  endforeach()
  list(JOIN entries ",\n" body)
  _wsa_json_string(root "${PROJECT_SOURCE_DIR}")
  _wsa_json_string(bin "${CMAKE_BINARY_DIR}")
  set(out "${CMAKE_BINARY_DIR}/layers.json")
  file(WRITE "${out}.tmp" "{\n  \"source_dir\": ${root},\n  \"binary_dir\": ${bin},\n"
                          "  \"targets\": {\n${body}\n  }\n}\n")
  file(COPY_FILE "${out}.tmp" "${out}" ONLY_IF_DIFFERENT)
  file(REMOVE "${out}.tmp")
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _wsa_write_layers)
