# psforge_add_test(NAME <name> SOURCES <files...> LIBS <targets...> [LABELS <labels...>]
#                  [TIMEOUT <seconds>] [ENV <VAR=value...>])
# Builds one GoogleTest binary and registers it with CTest as a single test.
function(psforge_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ENV" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main psforge_allocator psforge_build_settings)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  target_compile_definitions(${T_NAME} PRIVATE
    PSFORGE_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    PSFORGE_BIN_DIR="${CMAKE_RUNTIME_OUTPUT_DIRECTORY}")
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  if(PSFORGE_SANITIZER STREQUAL "thread")
    # Inherited by the servers and workers a test starts.
    list(APPEND T_ENV "TSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/tsan.supp")
    # Every process runs 5-15x slower under ThreadSanitizer.
    math(EXPR T_TIMEOUT "${T_TIMEOUT} * 3")
  endif()
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
                       ENVIRONMENT "${T_ENV}")
endfunction()
