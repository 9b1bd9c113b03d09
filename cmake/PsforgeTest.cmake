# psforge_add_test(NAME <name> SOURCES <files...> LIBS <targets...> [LABELS <labels...>]
#                  [TIMEOUT <seconds>] [ENV <VAR=value...>] [RUNS <programs...>])
# Builds one GoogleTest binary and registers it with CTest as a single test.
function(psforge_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ENV;RUNS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  # The programs the test starts are built before it.
  if(T_RUNS)
    add_dependencies(${T_NAME} ${T_RUNS})
  endif()
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

# psforge_add_isa_variant(<test> <ISA> [args...]) registers <test>'s binary
# again as <test>_<isa> with DNNL_MAX_CPU_ISA=<ISA>: oneDNN then dispatches
# as on a CPU with at most that ISA (AVX2 on an AVX-512 machine). The
# processes a test starts inherit it. Extra args go to the binary.
function(psforge_add_isa_variant BASE ISA)
  string(TOLOWER "${ISA}" isa)
  add_test(NAME ${BASE}_${isa} COMMAND ${BASE} ${ARGN})
  get_test_property(${BASE} TIMEOUT timeout)
  get_test_property(${BASE} LABELS labels)
  get_test_property(${BASE} ENVIRONMENT env)
  if(NOT env)
    set(env "")
  endif()
  list(APPEND env "DNNL_MAX_CPU_ISA=${ISA}")
  set_tests_properties(${BASE}_${isa} PROPERTIES TIMEOUT ${timeout} ENVIRONMENT "${env}")
  if(labels)
    set_tests_properties(${BASE}_${isa} PROPERTIES LABELS "${labels}")
  endif()
endfunction()
