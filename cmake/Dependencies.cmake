# Every dependency comes from a Debian 12 package (scripts/install-deps.sh).
find_package(Threads REQUIRED)
find_package(Protobuf REQUIRED)                 # FindProtobuf: protobuf::libprotobuf, protobuf::protoc
find_package(gRPC CONFIG REQUIRED)              # gRPC::grpc++, gRPC::grpc_cpp_plugin
find_package(prometheus-cpp CONFIG REQUIRED)    # prometheus-cpp::core
find_package(nlohmann_json 3.11 CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)            # spdlog::spdlog (fmt external)
find_package(OpenSSL 3 REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(SQLite3 REQUIRED)                  # SQLite::SQLite3
find_package(CURL REQUIRED)                     # CURL::libcurl (tests and the client's HTTP checks)
find_package(PkgConfig REQUIRED)
pkg_check_modules(LIBSSH REQUIRED IMPORTED_TARGET libssh>=0.10)
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)

# Standalone Asio ships neither a CMake config nor a .pc file.
find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
add_library(wsa_asio INTERFACE)
target_include_directories(wsa_asio SYSTEM INTERFACE ${ASIO_INCLUDE_DIR})
target_compile_definitions(wsa_asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED
  ASIO_HAS_CO_AWAIT=1 ASIO_HAS_STD_COROUTINE=1)
target_link_libraries(wsa_asio INTERFACE Threads::Threads)

if(WSA_BUILD_TESTS)
  find_package(GTest CONFIG REQUIRED)
endif()
