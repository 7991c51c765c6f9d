# Checks on the sources themselves, run by ctest (label unit) with the other tests.
#   layering           scripts/check_layers.py: every #include "..." in src/ and include/wsa/
#                      names a header its target may use (docs/architecture.md, "Checks")
#   check_layers_test  the checker's own tests, on small fake trees
find_package(Python3 REQUIRED COMPONENTS Interpreter)
add_test(NAME layering
  COMMAND Python3::Interpreter ${PROJECT_SOURCE_DIR}/scripts/check_layers.py
          --layers ${CMAKE_BINARY_DIR}/layers.json)
add_test(NAME check_layers_test
  COMMAND Python3::Interpreter ${PROJECT_SOURCE_DIR}/tests/unit/check_layers_test.py)
set_tests_properties(layering check_layers_test PROPERTIES LABELS unit TIMEOUT 120)
